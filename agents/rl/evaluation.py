"""The one ``evaluate`` every RL agent reports with, and the diversity metric it uses.

Why one function: the leaderboard compares algorithms, so every learner's final numbers must come
from the same sampling, the same held-out split and the same KL and perplexity definitions.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM

from agents import metrics as M
from agents.rl.policy import autocast, check_same_tokenizer, completion_scores, reference_of
from agents.rl.rollout import RolloutEnv, iteration_seeds
from llm_gym.models import load_causal_lm, load_tokenizer, resolve_mixed_precision


def distinct_n(sequences: list[list[int]], n: int) -> float:
    """Distinct n-grams over all n-grams in a set of completions (Li et al. 2016): 1 = no repetition."""
    grams = [tuple(seq[i : i + n]) for seq in sequences for i in range(len(seq) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def append_rollouts(path: str | Path, prompts: Sequence[str], completions: Sequence[str], metadata: Sequence[Any],
                    proxy: Sequence[float], gold: Sequence[float], kl: Sequence[float]) -> None:
    """Append evaluated samples to ``path``, one compact JSON line each: ``{prompt, completion, metadata,
    proxy, gold, kl}`` (gold None when the env has no gold reward; kl: that completion's KL to the start
    policy). Every learner's evaluation writes this one format, so ``llm-gym bench rescore`` reads any run."""
    rows = zip(prompts, completions, metadata, proxy, gold, kl, strict=True)
    with Path(path).open("a") as f:
        f.writelines(json.dumps({"prompt": p, "completion": t, "metadata": m, "proxy": float(r),
                                 "gold": None if math.isnan(g) else float(g), "kl": float(k)},
                                separators=(",", ":"), default=str) + "\n" for p, t, m, r, g, k in rows)


@dataclass
class EvalConfig:
    """How ``evaluate`` samples: held-out prompts by default, the training temperature for KL."""

    batch_size: int = 64
    temperature: float = 1.0
    top_k: int = 0
    split: str = "test"


@torch.no_grad()
def evaluate(
    policy_dir: str | Path, env_id: str, episodes: int, seed: int, env_kwargs: dict[str, Any] | None = None,
    config: EvalConfig | None = None, reference_dir: str | Path | None = None, device: str | None = None,
    rollouts_path: Path | None = None, mixed_precision: str = "auto",
) -> dict[str, float]:
    """Sample ``episodes`` completions from a policy directory on the env and report the standard metrics.

    Returns ``objective/reward`` (proxy), ``objective/gold_reward``, ``objective/kl`` (per sequence,
    k1, to the reference the policy recorded at export, or ``reference_dir``; 0 for an untrained
    model), ``eval/perplexity`` of the policy on the task's reference completions,
    ``eval/distinct_1``/``eval/distinct_2`` and ``episode/length`` (tokens, EOS included). With
    ``rollouts_path`` every evaluated sample is appended there as one compact JSON line
    ``{prompt, completion, metadata, proxy, gold, kl}`` (kl: that completion's k1 sum; 0 without a
    reference), so the samples can be re-scored later by other rewards, the task's verifier included.
    """
    config = config or EvalConfig()
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    precision = resolve_mixed_precision(mixed_precision, dev)
    model, tokenizer = load_causal_lm(policy_dir, device=dev)
    model.eval()
    tokenizer.padding_side = "right"  # reference completions are scored after the prompt
    reference_dir = reference_dir or reference_of(policy_dir)
    reference = None
    if reference_dir is not None and Path(reference_dir).resolve() != Path(policy_dir).resolve():
        reference = AutoModelForCausalLM.from_pretrained(reference_dir).to(dev).eval()
        check_same_tokenizer(tokenizer, load_tokenizer(reference_dir), "policy", "reference")
    env_kwargs = {"split": config.split, **(env_kwargs or {})}
    batch = min(config.batch_size, episodes)
    env = RolloutEnv(env_id, batch, dev, tokenizer, policy_dir, env_kwargs)
    generator = torch.Generator(dev).manual_seed(seed)
    sums = {"reward": 0.0, "gold": 0.0, "kl": 0.0, "length": 0.0, "nll": 0.0, "ref_tokens": 0.0}
    sequences: list[list[int]] = []
    done = 0
    for i in range((episodes + batch - 1) // batch):
        with autocast(dev, precision):
            rollout = env.rollout(model, iteration_seeds(seed, i, 0, batch), config.temperature, config.top_k, generator)
        n = min(batch, episodes - done)
        c = rollout.completions
        kl = torch.zeros(n, device=dev)
        if reference is not None:
            with autocast(dev, precision):
                ref_lp = completion_scores(reference, rollout.prompt_ids, rollout.prompt_mask, c.ids, c.mask,
                                           config.temperature).logprobs
            kl = ((c.logprobs - ref_lp) * c.mask).sum(1)[:n]
            sums["kl"] += float(kl.sum())
        if rollouts_path is not None:
            append_rollouts(rollouts_path, rollout.prompts[:n], rollout.texts[:n], rollout.metadata[:n],
                            rollout.score[:n].tolist(), rollout.gold[:n].tolist(), kl.tolist())
        refs = tokenizer([r + tokenizer.eos_token for r in env.references()], add_special_tokens=False,
                         return_tensors="pt", padding=True)
        ref_ids, ref_mask = refs["input_ids"].to(dev), refs["attention_mask"].to(dev)
        with autocast(dev, precision):
            nll = -completion_scores(model, rollout.prompt_ids, rollout.prompt_mask, ref_ids, ref_mask, 1.0).logprobs * ref_mask
        sums["nll"] += float(nll[:n].sum())
        sums["ref_tokens"] += float(ref_mask[:n].sum())
        sums["reward"] += float(rollout.score[:n].sum())
        sums["gold"] += float(rollout.gold[:n].sum())
        sums["length"] += float(c.lengths[:n].sum())
        sequences += [row[:length] for row, length in zip(c.ids[:n].tolist(), c.lengths[:n].tolist())]
        done += n
    env.close()
    return {
        M.REWARD: sums["reward"] / done,
        M.GOLD_REWARD: sums["gold"] / done,
        M.KL: sums["kl"] / done,
        M.EVAL_PERPLEXITY: math.exp(sums["nll"] / max(sums["ref_tokens"], 1.0)),
        M.EVAL_DISTINCT_1: distinct_n(sequences, 1),
        M.EVAL_DISTINCT_2: distinct_n(sequences, 2),
        M.EPISODE_LENGTH: sums["length"] / done,
    }
