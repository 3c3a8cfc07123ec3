"""Every registered on-policy algorithm through the one loop, best-of-n, DPO, and (slow) learning."""

from __future__ import annotations

import json
import math

import pytest
import torch
from rl_helpers import quick_sft, sft_dir  # noqa: F401  (fixture)
from safetensors.torch import load_file

from agents.rl.best_of_n import BestOfN, BestOfNConfig
from agents.rl.evaluation import evaluate
from agents.rl.registry import make_algorithm
from agents.rl.rollout import iteration_seeds
from llm_gym.models import load_causal_lm
from llm_gym.tokenization import encode_prompts

ENV = "llm_gym/Arithmetic-v0"
ON_POLICY = ["reinforce", "rloo", "grpo", "dapo", "gspo", "reinforce++"]


def small(sft_dir, **kw) -> dict:
    return {"model_name_or_path": str(sft_dir), "batch_size": 16, "num_mini_batches": 2, "eval_episodes": 16,
            "save_steps": 1, **kw}


def test_groups_share_a_prompt():
    seeds = iteration_seeds(0, 3, 0, num_prompts=3, group_size=2)
    assert seeds[0] == seeds[1] != seeds[2] == seeds[3] != seeds[4]
    assert iteration_seeds(0, 3, 1, 3, 2)[0] != seeds[0]  # other processes see other prompts


@pytest.mark.parametrize("algo", ON_POLICY)
def test_on_policy_algorithm_runs(algo, sft_dir, tmp_path):
    agent = make_algorithm(algo, **small(sft_dir, num_ppo_epochs=2 if algo == "grpo" else 1))
    # chrF, not the 0/1 verifier (which this start policy almost never satisfies): DAPO's filter drops
    # groups whose rewards are all equal, and with exact match every group could be dropped
    result = agent.train(ENV, 32, 0, tmp_path, {"reward": "chrf"})
    assert [row["step"] for row in result.curve] == [16, 32]
    for name in ("objective/reward", "objective/gold_reward", "policy/entropy", "policy/clipfrac",
                 "loss/policy", "episode/length", "perf/tokens_per_s", "perf/samples_per_s"):
        trained_rows = [r for r in result.curve if r.get("policy/kept_fraction", 1.0) > 0]  # DAPO may skip a batch
        assert all(math.isfinite(row[name]) for row in trained_rows), name
    for row in result.curve:  # the loop applies the missing-EOS penalty (1.0 by default) before advantages
        penalised = row["objective/reward"] - 1.0 * (1 - row["episode/eos_fraction"])
        assert row["objective/scores_with_eos_penalty"] == pytest.approx(penalised, abs=1e-5)
    trained, start = load_file(result.checkpoint_dir / "model.safetensors"), load_file(sft_dir / "model.safetensors")
    assert any(not torch.equal(trained[k], start[k]) for k in start)  # the policy was updated
    assert (tmp_path / "checkpoints").is_dir() and (result.checkpoint_dir / "reference.json").is_file()


def test_single_use_batches_skip_the_old_logprob_forward(sft_dir, tmp_path, monkeypatch):
    """One epoch, one minibatch: the policy forwards are the update's only (no no-grad pass before it)."""
    from agents.rl.policy import ActorCritic

    calls = []
    original = ActorCritic.forward
    monkeypatch.setattr(ActorCritic, "forward", lambda self, *a, **k: calls.append(torch.is_grad_enabled()) or original(self, *a, **k))
    make_algorithm("grpo", **small(sft_dir, num_mini_batches=1, save_steps=0)).train(ENV, 16, 0, tmp_path / "once")
    assert calls == [True]
    calls.clear()
    make_algorithm("grpo", **small(sft_dir, num_mini_batches=2, save_steps=0)).train(ENV, 16, 0, tmp_path / "twice")
    assert calls.count(False) == 1 and calls.count(True) == 2  # the 16 rows scored in one no-grad forward
    calls.clear()
    make_algorithm("grpo", **small(sft_dir, num_mini_batches=2, save_steps=0, local_rollout_forward_batch_size=4)
                   ).train(ENV, 16, 0, tmp_path / "chunked")
    assert calls.count(False) == 4 and calls.count(True) == 2  # ... or in chunks of local_rollout_forward_batch_size


def test_dynamic_sampling_drops_groups_that_all_score_alike(sft_dir, tmp_path):
    const = lambda prompts, completions, metadata: [1.0] * len(prompts)  # noqa: E731
    result = make_algorithm("dapo", **small(sft_dir)).train(ENV, 16, 0, tmp_path, {"reward": const})
    assert result.curve[0]["policy/kept_fraction"] == 0.0
    trained, start = load_file(result.checkpoint_dir / "model.safetensors"), load_file(sft_dir / "model.safetensors")
    assert all(torch.equal(trained[k], start[k]) for k in start)  # nothing informative: no update


def test_bad_configs_are_refused(sft_dir, tmp_path):
    with pytest.raises(ValueError, match="local_rollout_forward_batch_size must be >= 1"):
        make_algorithm("grpo", **small(sft_dir, local_rollout_forward_batch_size=0))
    with pytest.raises(ValueError, match="rloo needs num_generations >= 2"):
        make_algorithm("rloo", **small(sft_dir, num_generations=1))
    with pytest.raises(ValueError, match=r"batch_size \(10\) must be a positive multiple of num_generations \(4\)"):
        make_algorithm("grpo", **small(sft_dir, batch_size=10))
    with pytest.raises(ValueError, match="budget of 8 samples is smaller than one batch of 16 samples"):
        make_algorithm("grpo", **small(sft_dir)).train(ENV, 8, 0, tmp_path)
    with pytest.raises(ValueError, match="grpo: model_name_or_path is not set"):
        make_algorithm("grpo").train(ENV, 16, 0, tmp_path / "none")
    make_algorithm("grpo", **small(sft_dir)).train(ENV, 16, 0, tmp_path / "run")
    with pytest.raises(ValueError, match="holds a run with a different algo: 'grpo' there, 'dapo' now"):
        make_algorithm("dapo", **small(sft_dir)).train(ENV, 32, 0, tmp_path / "run")


def test_best_of_n_selects_by_proxy_reward(sft_dir, tmp_path):
    config = BestOfNConfig(model_name_or_path=str(sft_dir), num_generations=8, batch_size=64, eval_episodes=16)
    result = BestOfN(config).train(ENV, 128, 0, tmp_path)
    assert len(result.curve) == 2
    assert result.final["objective/kl"] == pytest.approx(math.log(8) - 7 / 8)
    base = evaluate(sft_dir, ENV, 16, 0)
    assert result.final["objective/gold_reward"] >= base["objective/gold_reward"]
    assert result.final["eval/perplexity"] == pytest.approx(base["eval/perplexity"])


@pytest.mark.parametrize(("loss_type", "margin"), [("sigmoid", 0.03), ("ipo", 0.008)])
def test_dpo_trains_on_pairwise_feedback_and_resumes(loss_type, margin, sft_dir, tmp_path):
    """DPO raises the implicit-reward margin of chosen over rejected on a feedback file, and resumes exactly.

    20 steps of 8 pairs at lr 3e-3: the mean margin of the last 5 steps minus that of the first 5, measured on
    this fixture's start (one torch thread) with training seeds 0-3: DPO +0.065 +0.065 +0.111 +0.122, IPO +0.016
    +0.027 +0.040 +0.063 (IPO pulls the margin towards 1/(2 beta) with a squared loss, so it moves slower).
    Each margin is about half the smallest gain of its loss; the test runs seed 0."""
    rows = [{"prompt": f"{a}+{b}=", "chosen": str(a + b), "rejected": str(a + b + 1)} for a in range(8) for b in range(4)]
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    options = {"model_name_or_path": str(sft_dir), "dataset_name": str(data), "batch_size": 8, "loss_type": loss_type,
               "learning_rate": 3e-3, "eval_episodes": 8, "save_steps": 5}
    full = make_algorithm("dpo", **options).train(ENV, 160, 0, tmp_path / "full")
    margins = [row["rewards/margins"] for row in full.curve]
    assert len(margins) == 20 and sum(margins[-5:]) / 5 > sum(margins[:5]) / 5 + margin
    make_algorithm("dpo", **options).train(ENV, 80, 0, tmp_path / "cut")  # half, then continue in the same folder
    resumed = make_algorithm("dpo", **options).train(ENV, 160, 0, tmp_path / "cut")
    drop = lambda curve: [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in curve]  # noqa: E731
    assert drop(resumed.curve) == drop(full.curve)
    bad = tmp_path / "ratings.jsonl"
    bad.write_text(json.dumps({"prompt": "1+1=", "completion": "2", "label": 1.0}) + "\n")
    with pytest.raises(ValueError, match="dpo: .*ratings.jsonl holds no preference pairs"):
        make_algorithm("dpo", **{**options, "dataset_name": str(bad)}).train(ENV, 8, 0, tmp_path / "bad")


def test_ipo_compares_length_normalised_log_ratios_and_dpo_summed_ones(sft_dir, tmp_path, monkeypatch):
    import agents.rl.dpo as dpo
    from agents.rl.losses import preference_log_ratios

    seen = []
    monkeypatch.setattr(dpo, "preference_log_ratios", lambda *args: seen.append(args[-1]) or preference_log_ratios(*args))
    rows = [{"prompt": f"{a}+1=", "chosen": str(a + 1), "rejected": str(a + 2)} for a in range(8)]
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    for loss_type in ("sigmoid", "ipo"):
        make_algorithm("dpo", model_name_or_path=str(sft_dir), dataset_name=str(data), batch_size=8, eval_episodes=8,
                       loss_type=loss_type, save_steps=0).train(ENV, 8, 0, tmp_path / loss_type)
    assert seen == [False, True]


def test_dpo_logs_the_policy_log_probs_of_chosen_and_rejected(sft_dir, tmp_path):
    """At step 1 the policy is still the SFT model, so ``logps/chosen`` and ``logps/rejected`` are its summed
    log-probs of the step's completions (EOS included), recomputed here one pair at a time with the HF model."""
    rows = [{"prompt": f"{a}+{b}=", "chosen": str(a + b), "rejected": str(a + b + 10)} for a in range(4) for b in range(4)]
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    algo = make_algorithm("dpo", model_name_or_path=str(sft_dir), dataset_name=str(data), batch_size=8, eval_episodes=8)
    first = algo.train(ENV, 8, 0, tmp_path / "run").curve[0]
    model, tok = load_causal_lm(sft_dir)
    for key in ("chosen", "rejected"):
        sums = []
        for i in algo._indices(1, len(rows), 0, 0, 1):
            head = encode_prompts(tok, [rows[i]["prompt"]])[0]
            tail = tok(rows[i][key], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            with torch.no_grad():
                logits = model(torch.tensor([head + tail])).logits[0, len(head) - 1:-1]
            sums.append(float(logits.log_softmax(-1).gather(1, torch.tensor(tail)[:, None]).sum()))
        assert first[f"logps/{key}"] == pytest.approx(sum(sums) / len(sums), abs=1e-4)
    assert first["logps/chosen"] > first["logps/rejected"]  # the SFT model already prefers the right sums
    # policy = reference at step 1: every log-ratio is 0, so the margin is 0 and the loss -log sigmoid(0) = log 2
    assert first["rewards/margins"] == pytest.approx(0.0, abs=1e-6)
    assert first["loss/train"] == pytest.approx(math.log(2), abs=1e-6)


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("algo", [*ON_POLICY, "best-of-n"])
def test_algorithm_improves_gold_reward(algo, tmp_path):
    """Verifier reward as the proxy, the fast PPO test's start (SFT seed 0, 0.309 gold on 256 held-out prompts),
    budget 3200 samples (best-of-4: 1024). Measured with this code, seeds 0 and 1 (gold gain): REINFORCE +0.176
    +0.152, RLOO +0.152 +0.098, GRPO +0.141 +0.094, DAPO +0.172 +0.113, GSPO +0.137 +0.164, REINFORCE++ +0.156
    +0.180 (PPO, 4 epochs x 4 minibatches: +0.176 +0.180; best-of-4 earlier: +0.375). The +0.05 margin is about
    half the smallest gain seen (+0.094); the test runs seed 0."""
    start_dir = quick_sft(tmp_path / "sft", steps=500, seed=0)
    start = evaluate(start_dir, ENV, 256, seed=123)
    if algo == "best-of-n":
        agent = make_algorithm(algo, model_name_or_path=str(start_dir), eval_episodes=256)
    else:
        agent = make_algorithm(algo, model_name_or_path=str(start_dir), learning_rate=3e-4, save_steps=0,
                               eval_episodes=256, batch_size=64, num_mini_batches=2)
    result = agent.train(ENV, budget=3200 if algo != "best-of-n" else 1024, seed=0, out_dir=tmp_path / algo)
    final = agent.evaluate(result.checkpoint_dir, ENV, 256, 123)
    assert final["objective/gold_reward"] > start["objective/gold_reward"] + 0.05


def test_compile_sampler_routes_the_rollouts_through_the_compiled_forward(sft_dir, tmp_path, monkeypatch):
    """The config flag reaches the sampler (which compiled forward it gets is pinned in test_sampling)."""
    import agents.rl.sampling as sampling

    compiled = []
    monkeypatch.setattr(sampling, "compiled_forward", lambda model: compiled.append(model) or model)
    make_algorithm("rloo", **small(sft_dir, save_steps=0)).train(ENV, 16, 0, tmp_path / "eager")
    assert compiled == []
    make_algorithm("rloo", **small(sft_dir, save_steps=0, compile_sampler=True)).train(ENV, 16, 0, tmp_path / "compiled")
    assert len(compiled) == 1  # the one training rollout (the final evaluation samples eagerly)
