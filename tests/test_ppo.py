"""PPO: the shared RL math, a short real run with every logged metric, bad input, LoRA, the GPU path."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
from rl_helpers import quick_sft, sft_dir  # noqa: F401  (fixture)

from agents import metrics as M
from agents.rl.ppo import PPO, PPOConfig
from agents.rl.estimators import KLController, gae, kl_penalty, masked_mean, masked_whiten
from agents.rl.evaluation import distinct_n, evaluate
from agents.rl.run import TrainingDiverged
from llm_gym.models import TinyModelConfig, save_tiny

ENV = "llm_gym/Arithmetic-v0"
CONVENTION_METRICS = [
    "objective/reward", "objective/gold_reward", "objective/kl", "objective/kl_coef", "policy/entropy",
    "policy/clipfrac", "policy/approx_kl", "loss/policy", "loss/value", "value/explained_variance",
    "episode/length", "perf/tokens_per_s", "perf/samples_per_s",
]
EVAL_METRICS = ["objective/reward", "objective/gold_reward", "objective/kl", "eval/perplexity", "eval/distinct_1",
                "eval/distinct_2", "episode/length"]


def small(policy_dir, **kw) -> PPOConfig:
    return PPOConfig(model_name_or_path=str(policy_dir), **{"batch_size": 16, "num_mini_batches": 2, "num_ppo_epochs": 2,
                                                             "eval_episodes": 32, "save_steps": 1, **kw})


# ----------------------------------------------------------------------------------- RL math
def test_gae_matches_a_naive_loop():
    rng = np.random.default_rng(0)
    rewards, values = torch.tensor(rng.normal(size=(3, 5))), torch.tensor(rng.normal(size=(3, 5)))
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.float64)
    adv, ret = gae(rewards, values, mask, gamma=0.9, lam=0.8)
    for b in range(3):
        n = int(mask[b].sum())
        last = 0.0
        for t in reversed(range(n)):
            next_v = values[b, t + 1] if t + 1 < n else 0.0
            last = rewards[b, t] + 0.9 * next_v - values[b, t] + 0.9 * 0.8 * last
            assert adv[b, t] == pytest.approx(float(last))
            assert ret[b, t] == pytest.approx(float(last + values[b, t]))
        assert (adv[b, n:] == 0).all()


def test_whitening_ignores_padding_and_kl_estimators():
    x = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    w = masked_whiten(x, mask)
    assert float(masked_mean(w, mask)) == pytest.approx(0.0, abs=1e-6)
    assert w[0, 3] == 0
    assert float(masked_mean(masked_whiten(x, mask, shift_mean=False), mask)) == pytest.approx(2.0, abs=1e-5)
    # k1 and k3 are unbiased estimates of KL(p||q) from samples of p; k3 is never negative
    p, q = torch.distributions.Categorical(probs=torch.tensor([0.7, 0.2, 0.1])), torch.distributions.Categorical(
        probs=torch.tensor([0.4, 0.4, 0.2]))
    tokens = p.sample((200_000,), )
    lp, lq = p.log_prob(tokens), q.log_prob(tokens)
    true_kl = float(torch.distributions.kl_divergence(p, q))
    for estimator in ("k1", "k3"):
        assert float(kl_penalty(lp, lq, estimator).mean()) == pytest.approx(true_kl, abs=0.01)
    assert (kl_penalty(lp, lq, "k3") >= 0).all()
    with pytest.raises(ValueError, match="unknown KL estimator 'k2'"):
        kl_penalty(lp, lq, "k2")


def test_kl_controller_and_distinct_n():
    fixed = KLController(0.1)
    fixed.update(10.0, 1000)
    assert fixed.value == 0.1
    adaptive = KLController(0.1, target=1.0, horizon=1000)
    adaptive.update(5.0, 100)  # KL far above target: beta grows by the clipped 20% x 100/1000
    assert adaptive.value == pytest.approx(0.1 * 1.02)
    adaptive.update(0.0, 100)
    assert adaptive.value < 0.1 * 1.02
    restored = KLController(0.5, target=1.0)
    restored.load_state_dict(adaptive.state_dict())
    assert restored.value == adaptive.value
    assert distinct_n([[1, 2, 3], [1, 2, 4]], 1) == pytest.approx(4 / 6)
    assert distinct_n([[1, 2, 3], [1, 2, 4]], 2) == pytest.approx(3 / 4)


# ------------------------------------------------------------------------------- a real run
def test_ppo_run_logs_every_metric_and_exports_a_policy(sft_dir, tmp_path):
    result = PPO(small(sft_dir)).train(ENV, budget=32, seed=0, out_dir=tmp_path)
    assert [row["step"] for row in result.curve] == [16, 32]
    for name in CONVENTION_METRICS:
        assert all(math.isfinite(row[name]) for row in result.curve), name
    assert result.curve[0]["objective/kl"] == pytest.approx(0.0, abs=1e-5)  # first rollout = reference
    assert result.curve[0]["objective/kl_coef"] == 0.05
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines == result.curve
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert (tmp_path / "config.yaml").is_file() and "num_ppo_epochs: 2" in (tmp_path / "config.yaml").read_text()
    assert [p.name for p in sorted((tmp_path / "checkpoints").iterdir())] == ["step-00000001", "step-00000002"]
    assert result.checkpoint_dir == tmp_path / "policy"
    assert (result.checkpoint_dir / "value_head.safetensors").is_file()
    assert set(EVAL_METRICS) <= set(result.final)
    # the trained policy moved away from its reference: the k1 estimate (a sample mean of log-ratios, which
    # can come out negative on 32 completions) is no longer exactly 0 as it is for an untrained policy
    assert abs(result.final["objective/kl"]) > 1e-4
    again = PPO(small(sft_dir)).evaluate(result.checkpoint_dir, ENV, 32, 0)
    assert again == result.final  # evaluation is seeded


def test_evaluate_an_untrained_model_has_zero_kl(sft_dir):
    metrics = evaluate(sft_dir, ENV, 40, seed=1)
    assert set(EVAL_METRICS) <= set(metrics)
    assert metrics["objective/kl"] == 0.0 and 1.0 < metrics["eval/perplexity"] < 20.0


def test_lora_reference_is_the_adapter_disabled_and_separate_critic(sft_dir, tmp_path):
    pytest.importorskip("peft")
    lora = PPO(small(sft_dir, lora_r=4, save_steps=0, eval_episodes=8)).train(ENV, 16, 0, tmp_path / "lora")
    assert lora.curve[0]["objective/kl"] == pytest.approx(0.0, abs=1e-6)  # LoRA B starts at zero
    assert (lora.checkpoint_dir / "model.safetensors").is_file()  # merged, loadable without peft
    critic = PPO(small(sft_dir, value_model="separate", save_steps=0, eval_episodes=8))
    result = critic.train(ENV, 16, 0, tmp_path / "critic")
    assert math.isfinite(result.curve[0]["loss/value"])


# ---------------------------------------------------------------------------------- bad input
def test_budget_smaller_than_one_batch(sft_dir, tmp_path):
    with pytest.raises(ValueError, match="budget of 10 samples is smaller than one batch of 16 samples"):
        PPO(small(sft_dir)).train(ENV, budget=10, seed=0, out_dir=tmp_path)


def test_policy_and_reference_tokenizers_must_match(sft_dir, tmp_path):
    other = save_tiny(tmp_path / "other", ["xyz+-=0123"], "char", TinyModelConfig(n_layer=1, n_embd=16, n_head=2))
    with pytest.raises(ValueError, match="policy and reference tokenizers differ"):
        PPO(small(sft_dir, ref_model_name_or_path=str(other))).train(ENV, 16, 0, tmp_path / "run")
    with pytest.raises(ValueError, match="policy and env tokenizers differ"):
        PPO(small(sft_dir)).train(ENV, 16, 0, tmp_path / "run2", {"tokenizer": str(other)})


def test_nan_reward_stops_with_iteration_and_keeps_last_good_checkpoint(sft_dir, tmp_path):
    calls = []

    def reward(prompts, completions, metadata):
        calls.append(1)
        return np.full(len(prompts), np.nan if len(calls) == 3 else 1.0)

    with pytest.raises(TrainingDiverged, match=r"iteration 3: the env's reward failed: .*nan.*last good checkpoint: "
                                               r".*step-00000002"):
        PPO(small(sft_dir)).train(ENV, 64, 0, tmp_path, {"reward": reward})
    assert (tmp_path / "checkpoints" / "step-00000002" / "checkpoint.json").is_file()
    assert not (tmp_path / "checkpoints" / "step-00000003").exists()


def test_inf_loss_stops_with_iteration_and_cause(sft_dir, tmp_path):
    huge = lambda prompts, completions, metadata: np.full(len(prompts), 3e38)  # noqa: E731  finite, but its square is not
    with pytest.raises(TrainingDiverged, match="iteration 1: (advantages|loss) is (nan|inf) .*no checkpoint was written yet"):
        PPO(small(sft_dir)).train(ENV, 32, 0, tmp_path, {"reward": huge})


def test_incompatible_checkpoint_is_refused(sft_dir, tmp_path):
    PPO(small(sft_dir)).train(ENV, 16, 0, tmp_path)
    # The run record names the first difference before anything loads...
    with pytest.raises(ValueError, match="holds a run with a different batch_size: 16 there, 32 now"):
        PPO(small(sft_dir, batch_size=32)).train(ENV, 64, 0, tmp_path)
    with pytest.raises(ValueError, match="holds a run with a different value_model: 'shared' there, 'separate' now"):
        PPO(small(sft_dir, value_model="separate")).train(ENV, 32, 0, tmp_path)
    with pytest.raises(ValueError, match="different env_id: 'llm_gym/Arithmetic-v0' there, 'llm_gym/Count-v0' now"):
        PPO(small(sft_dir)).train("llm_gym/Count-v0", 32, 0, tmp_path)
    with pytest.raises(ValueError, match='different env_kwargs: {} there, {"reward": "exact_match"} now'):
        PPO(small(sft_dir)).train(ENV, 32, 0, tmp_path, {"reward": "exact_match"})
    other = tmp_path.parent / f"{tmp_path.name}-copy"
    shutil.copytree(sft_dir, other)
    with pytest.raises(ValueError, match=f"different model_name_or_path: '{sft_dir.resolve()}' there, '{other.resolve()}' now"):
        PPO(small(other)).train(ENV, 32, 0, tmp_path)
    # ...and the checkpoint itself is checked too (a run record deleted or a checkpoint copied in).
    (tmp_path / "run_record.json").unlink()
    with pytest.raises(ValueError, match="cannot resume from incompatible checkpoint .*batch_size was 16 there but is 32"):
        PPO(small(sft_dir, batch_size=32)).train(ENV, 64, 0, tmp_path)


def test_target_kl_stops_the_update_at_the_first_minibatch_past_it(sft_dir, tmp_path):
    """2 epochs x 2 minibatches planned. The first minibatch is scored by the policy that sampled (approx KL
    0), so its step is taken; after it the policy has moved, and a target of 1e-12 stops the rest."""
    free = PPO(small(sft_dir, save_steps=0)).train(ENV, 32, 0, tmp_path / "free")
    assert [row[M.UPDATE_FRACTION] for row in free.curve] == [1.0, 1.0]
    stopped = PPO(small(sft_dir, save_steps=0, target_kl=1e-12)).train(ENV, 32, 0, tmp_path / "stopped")
    assert [row[M.UPDATE_FRACTION] for row in stopped.curve] == [0.25, 0.25]
    assert all(row[M.APPROX_KL] < 1.5e-12 for row in stopped.curve)  # only the steps taken are averaged


# ------------------------------------------------------------------------------------ learning
@pytest.mark.timeout(1800)  # SFT 500 steps + 40 PPO iterations + evaluations passed 10 minutes at load average 17
def test_ppo_learns_with_the_verifier_as_reward(tmp_path):
    """Fast learning test: 2-digit addition, verifier reward as the proxy, SFT start at 31% (500 steps,
    SFT seed 0), 40 PPO iterations x 64 rollouts; gold on 256 held-out prompts.

    Measured gains (KL 0.9-1.0 nats): +0.031 with 2 torch threads (this test's setting on the 2-core CI
    machine; the SFT start is then 0.328), and +0.113, +0.078, +0.070, +0.070 for PPO seeds 0-3 with 1 thread
    (SFT start 0.359). Float rounding alone (thread count, or computing the same log-probs by another
    summation order) moves a single run's gain this much, so the margin is +0.015, half the smallest gain
    seen; an unchanged policy scores exactly its start (fixed evaluation prompts and sampling seed).
    """
    start_dir = quick_sft(tmp_path / "sft", steps=500, seed=0)
    start = evaluate(start_dir, ENV, 256, seed=123)
    config = PPOConfig(model_name_or_path=str(start_dir), learning_rate=3e-4, save_steps=0, eval_episodes=256)
    result = PPO(config).train(ENV, budget=40 * 64, seed=0, out_dir=tmp_path / "ppo")
    final = evaluate(result.checkpoint_dir, ENV, 256, seed=123)
    assert final["objective/gold_reward"] > start["objective/gold_reward"] + 0.015
    assert final["objective/kl"] < 3.0


@pytest.mark.gpu
def test_ppo_on_cuda_with_bf16_autocast(sft_dir, tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    result = PPO(small(sft_dir, save_steps=0)).train(ENV, 32, 0, tmp_path)
    assert all(math.isfinite(row["loss/policy"]) for row in result.curve)
    assert result.final["objective/gold_reward"] >= 0.0


@pytest.mark.slow
@pytest.mark.timeout(1800)  # the SFT + feedback + reward-model pipeline alone takes 2-4 CPU minutes
def test_ppo_on_a_learned_reward_model(tmp_path):
    """The RLHF setting: agents.supervised.sft start (2-digit addition), simulated feedback, a Bradley-Terry reward
    model, PPO on that learned reward with kl_coef 1.0 (50 iterations x 64, seed 0).

    Measured twice; the pipeline is not bit-identical across torch thread counts, so the reward model
    differs: (1 thread) RM 70% held-out pairwise accuracy, proxy -0.62 -> +0.48, KL max 2.4 nats, gold
    0.26 -> 0.20; (this test, 2 threads) RM 58%, proxy -0.64 -> -0.35, KL max 0.57, gold 0.28 -> 0.27.
    Either way this learned reward is not good enough for PPO to raise the gold reward (best-of-4 on the
    70% RM did: 0.26 -> 0.375). The test pins what holds in both runs: the proxy rises (margin +0.15,
    half the smaller gain) and the KL stays bounded; gold is not asserted.
    """
    from rl_helpers import sft_and_learned_reward

    sft, rm = sft_and_learned_reward(tmp_path / "start", sft_steps=500, rm_steps=1000, feedback_prompts=2048)
    env_kwargs = {"reward": f"learned:path={rm}"}
    start = evaluate(sft, ENV, 512, seed=123, env_kwargs=env_kwargs)
    config = PPOConfig(model_name_or_path=str(sft), kl_coef=1.0, learning_rate=1e-4, save_steps=0, eval_episodes=512)
    result = PPO(config).train(ENV, budget=50 * 64, seed=0, out_dir=tmp_path / "ppo", env_kwargs=env_kwargs)
    final = evaluate(result.checkpoint_dir, ENV, 512, seed=123, env_kwargs=env_kwargs)
    assert final["objective/reward"] > start["objective/reward"] + 0.15
    assert max(row["objective/kl"] for row in result.curve) < 4.0
