"""Reward models learned from simulated feedback: held-out ranking, use as an env reward, bad inputs."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import gymnasium
import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

import llm_gym  # noqa: F401  (registers env ids)
from agents.supervised.data import encode_reward_text
from agents.feedback.collect import LABELS_FILE, FeedbackConfig, collect_feedback
from agents.supervised.reward_training import RewardModelConfig, train_reward_model
from agents.rl.sampling import sample_completions
from agents.supervised.sft import SFTConfig, train_sft
from llm_gym.models import TinyModelConfig, load_causal_lm, load_tokenizer, save_tiny
from llm_gym.rewards import LearnedReward, reward_model_text
from llm_gym.tasks import make_task

COPY_KWARGS = {"min_len": 1, "max_len": 3}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> dict[str, Path]:
    """SFT policy on copy -> simulated preference pairs from the gold verifier -> their paths and timings."""
    root = tmp_path_factory.mktemp("rm")
    task = make_task("copy", **COPY_KWARGS)
    texts = [s.prompt + s.reference for s in task.dataset("train", 500, seed=0)]
    model = save_tiny(root / "init", texts, "char", TinyModelConfig(n_layer=2, n_embd=64))
    started = time.perf_counter()
    sft = train_sft(
        SFTConfig(model_name_or_path=str(model), output_dir=str(root / "sft"), env_id="llm_gym/Copy-v0",
                  env_kwargs={"task_kwargs": COPY_KWARGS}, train_size=3000,
                  eval_size=100, batch_size=32, max_steps=100, learning_rate=3e-3, warmup_steps=10, eval_every=0)
    )
    sft_s = time.perf_counter() - started
    started = time.perf_counter()
    pairs = root / "feedback" / LABELS_FILE
    stats = collect_feedback(
        FeedbackConfig(model_name_or_path=str(root / "sft"), output_dir=str(pairs.parent), env_id="llm_gym/Copy-v0",
                       env_kwargs={"task_kwargs": COPY_KWARGS},
                       num_prompts=800, k=4, temperature=1.0),
        output_fn=print,
    )
    print(f"SFT {sft_s:.1f}s (held-out accuracy {sft.final['eval/accuracy']:.2f}); feedback "
          f"{time.perf_counter() - started:.1f}s: {stats.written} pairs, skipped {dict(stats.skipped)}")
    return {"sft": root / "sft", "pairs": pairs, "root": root}


def rm_config(pipeline, out: str, **overrides) -> RewardModelConfig:
    base = RewardModelConfig(
        data=str(pipeline["pairs"]), output_dir=str(pipeline["root"] / out), model_name_or_path=str(pipeline["sft"]),
        max_steps=200, batch_size=32, learning_rate=3e-3, eval_every=0, eval_fraction=0.2,
    )
    return replace(base, **overrides)


def test_reward_model_ranks_held_out_pairs_and_drives_an_env(pipeline):
    # Margins from 4 runs of this pipeline as it stands (800 labelled prompts, ~1750 pairs; RM seeds 0-3, one
    # torch thread; most pairs differ by one substituted letter), 400 steps: held-out pairwise accuracy of
    # the trained head 0.759-0.851 (untrained 0.44-0.61); env Spearman with the gold verifier over 256
    # sampled episodes 0.371-0.466. At 200 steps the same seeds reached 0.726-0.772 and Spearman -0.046 to
    # 0.465: seed 0 ranked held-out pairs well yet fresh samples at chance, so 200 steps was too few to
    # test on. The data change with the SFT policy (a float-rounding change to SFT moves them), hence the
    # slack: accuracy >= 0.65, +0.10 over the untrained head, Spearman > 0.15.
    started = time.perf_counter()
    result = train_reward_model(rm_config(pipeline, "rm", center_coef=0.01, max_steps=400))
    print(f"reward model {time.perf_counter() - started:.1f}s: {result.initial} -> {result.final}; {result.counts}")
    assert result.final["eval/pairwise_accuracy"] >= 0.65
    assert result.final["eval/pairwise_accuracy"] > result.initial["eval/pairwise_accuracy"] + 0.10

    # The saved directory is a learned reward for any env; its rewards must track the gold verifier.
    env = gymnasium.make_vec(
        "llm_gym/Copy-v0", num_envs=256, vectorization_mode="vector_entry_point", granularity="sequence",
        tokenizer=str(pipeline["sft"]), task_kwargs=COPY_KWARGS, reward=f"learned:path={result.output_dir}",
        gold_reward="verifier", split="test",
    )
    policy, tokenizer = load_causal_lm(pipeline["sft"])
    problem = env.unwrapped.problem
    obs, _ = env.reset(seed=0)
    P = problem.max_prompt_tokens
    done = sample_completions(
        policy, obs["input_ids"][:, :P], obs["attention_mask"][:, :P], problem.max_new_tokens,
        tokenizer.eos_token_id, tokenizer.pad_token_id, temperature=1.0, generator=torch.Generator().manual_seed(0),
    )
    _, reward, terminated, truncated, info = env.step(done.ids)
    assert bool((terminated | truncated).all())
    gold = np.asarray(info["gold_reward"], dtype=np.float64)
    assert 0.1 < gold.mean() < 0.9  # both good and bad completions are present
    rho, p_value = spearmanr(np.asarray(reward), gold)
    print(f"env reward vs gold verifier: Spearman {rho:.3f} (p={p_value:.2g}) over {len(gold)} episodes (gold mean {gold.mean():.2f})")
    assert rho > 0.15
    # And the env's reward is exactly LearnedReward on reward_model_text.
    texts = env.unwrapped.turn_prompts, env.unwrapped.turn_completions
    direct = LearnedReward(result.output_dir)(*texts, [{}] * len(gold))
    np.testing.assert_allclose(np.asarray(reward), direct, rtol=1e-4, atol=1e-4)


def test_pointwise_objective_and_tiny_model_from_config(pipeline, tmp_path):
    # Ratings as a verifier gives them: every sampled completion labelled 1 if it is the prompt's copy.
    # (Labelling a pair's chosen side 1 and its rejected side 0 is no pointwise signal here: a completion
    # is chosen in one pair and rejected in another, and 200 steps left the held-out loss level or higher for
    # two of 3 seeds.) Margins from RM seeds 0-2 on this pipeline, one torch thread: 1/3 of the labels are
    # positive; held-out loss 0.704-0.709 -> 0.554-0.603 and accuracy 0.39-0.43 -> 0.740-0.742, against 0.672
    # for always answering "wrong". Asserted: the loss falls by 0.05 and accuracy beats that rate by 0.03.
    candidates = [json.loads(line) for line in (pipeline["pairs"].parent / "candidates.jsonl").read_text().splitlines()]
    rows = [{"prompt": c["prompt"], "completion": text, "label": int(text == c["metadata"]["reference"])}
            for c in candidates for text in c["completions"]]
    ratings = tmp_path / "ratings.jsonl"
    ratings.write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = train_reward_model(
        RewardModelConfig(data=str(ratings), output_dir=str(tmp_path / "rm"), tokenizer=str(pipeline["sft"]),
                          max_steps=200, batch_size=32, learning_rate=3e-3, eval_every=0, eval_fraction=0.2)
    )
    assert set(result.final) >= {"eval/accuracy", "eval/pairwise_accuracy", "eval/loss"}
    positive = np.mean([row["label"] for row in rows])
    assert result.final["eval/loss"] < result.initial["eval/loss"] - 0.05
    assert result.final["eval/accuracy"] > max(positive, 1 - positive) + 0.03
    assert LearnedReward(result.output_dir).model.config.num_labels == 1


def test_long_texts_are_truncated_from_the_left_and_counted(pipeline):
    tokenizer = load_tokenizer(pipeline["sft"])
    ids, cut = encode_reward_text(tokenizer, "copy abc=", "abc", max_length=4)
    full = tokenizer(reward_model_text("copy abc=", "abc"))["input_ids"]
    assert cut and ids == full[-4:]  # the completion (the judged part) is kept
    result = train_reward_model(rm_config(pipeline, "rm_short", max_length=8, max_steps=2))
    assert result.counts["truncated_texts"] > 0


def test_bad_reward_model_inputs(pipeline, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ValueError, match="is empty: no usable preference pairs or ratings"):
        train_reward_model(rm_config(pipeline, "x", data=str(empty)))
    same = tmp_path / "same.jsonl"
    same.write_text(json.dumps({"prompt": "copy a=", "chosen": "a", "rejected": "a"}) + "\n")
    with pytest.raises(ValueError, match="is empty.*1 chosen_equals_rejected"):
        train_reward_model(rm_config(pipeline, "x", data=str(same)))
    big = save_tiny(tmp_path / "big", ["abcdefghijklmnopqrstuvwxyz0123456789+-=ABCDEFGHIJKLMNOP"], "char")
    with pytest.raises(ValueError, match="tokenizer/model vocabulary mismatch"):
        train_reward_model(rm_config(pipeline, "x", tokenizer=str(big)))
    with pytest.raises(ValueError, match="written for a different model"):
        train_reward_model(rm_config(pipeline, "x", resume_from_checkpoint=str(pipeline["sft"] / "checkpoints")))
    with pytest.raises(ValueError, match="objective='pointwise' but .* holds preference pairs"):
        train_reward_model(rm_config(pipeline, "x", objective="pointwise"))
    with pytest.raises(ValueError, match="needs --model_name_or_path .* or --tokenizer"):
        rm_config(pipeline, "x", model_name_or_path=None)
