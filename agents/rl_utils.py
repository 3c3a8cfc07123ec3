"""Small, shared RL pieces: masked statistics, whitening, GAE, KL estimators and controllers,
diversity metrics, and the one ``evaluate`` every policy-gradient agent reports with.

Why one module: PPO, GRPO, RLOO and REINFORCE differ in how they turn rewards into advantages,
not in how they average over padded tokens or estimate KL; keeping those here means the algorithm
files show only what makes each algorithm different.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from transformers import AutoModelForCausalLM

from agents.policy import autocast, check_same_tokenizer, reference_of, sequence_forward, token_logprobs
from agents.rollout import RolloutEnv, iteration_seeds
from llm_gym.models import load_causal_lm, load_tokenizer

KLEstimator = Literal["k1", "k3"]


def masked_sum(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    return (x * mask).sum() if dim is None else (x * mask).sum(dim)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean over the real (mask == 1) entries, so padding never dilutes a loss or a statistic."""
    if dim is None:
        return masked_sum(x, mask) / mask.sum().clamp(min=1)
    return masked_sum(x, mask, dim) / mask.sum(dim).clamp(min=1)


def masked_var(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Unbiased variance over the real entries."""
    mean = masked_mean(x, mask)
    n = mask.sum()
    return masked_sum((x - mean) ** 2, mask) / (n - 1).clamp(min=1)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """Zero-mean unit-variance over real entries; ``shift_mean=False`` only rescales (reward whitening)."""
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    whitened = (x - mean) * torch.rsqrt(var + 1e-8)
    return (whitened if shift_mean else whitened + mean) * mask


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float):
    """Generalised advantage estimation over the completion tokens (B, T); returns (advantages, returns).

    Positions past a row's end have zero reward, value and mask, so the recursion stops there. The
    loop runs over the T time steps, not over the batch.
    """
    values, rewards = values * mask, rewards * mask
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[:, 0])
    T = rewards.shape[1]
    for t in reversed(range(T)):
        next_value = values[:, t + 1] if t + 1 < T else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = delta + gamma * lam * last
        advantages[:, t] = last
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


def kl_penalty(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: KLEstimator) -> torch.Tensor:
    """Per-token KL(policy || reference) estimate from samples of the policy (Schulman's k1 / k3).

    k1 = log p - log q is unbiased but can be negative per token; k3 = (r - 1) - log r with
    r = q / p is unbiased, always >= 0 and lower-variance.
    """
    log_ratio = logprobs - ref_logprobs
    if estimator == "k1":
        return log_ratio
    if estimator == "k3":
        return torch.expm1(-log_ratio) + log_ratio
    raise ValueError(f"unknown KL estimator {estimator!r}; use 'k1' or 'k3'")


class KLController:
    """The KL coefficient β: fixed, or adapted towards ``target`` KL per sequence (Ziegler et al. 2019).

    The adaptive rule moves β by at most 20% of the relative error per ``horizon`` samples, so a
    noisy KL estimate cannot swing it; its state is checkpointed with the run.
    """

    def __init__(self, init: float, target: float | None = None, horizon: int = 10_000):
        if init < 0:
            raise ValueError(f"kl_coef must be >= 0, got {init}")
        self.value, self.target, self.horizon = float(init), target, horizon

    def update(self, kl: float, n_samples: int) -> None:
        if self.target is None:
            return
        error = float(np.clip(kl / self.target - 1, -0.2, 0.2))
        self.value *= 1 + error * n_samples / self.horizon

    def state_dict(self) -> dict[str, float]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.value = float(state["value"])


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> float:
    """1 - Var[returns - values] / Var[returns]: 1 is a perfect critic, 0 a constant one."""
    var_returns = masked_var(returns, mask)
    return float(1 - masked_var(returns - values, mask) / var_returns) if var_returns > 0 else float("nan")


def distinct_n(sequences: list[list[int]], n: int) -> float:
    """Distinct n-grams over all n-grams in a set of completions (Li et al. 2016): 1 = no repetition."""
    grams = [tuple(seq[i : i + n]) for seq in sequences for i in range(len(seq) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


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
) -> dict[str, float]:
    """Sample ``episodes`` completions from a policy directory on the env and report the standard metrics.

    Returns ``objective/reward`` (proxy), ``objective/gold_reward``, ``objective/kl`` (per sequence,
    k1, to the reference the policy recorded at export, or ``reference_dir``; 0 for an untrained
    model), ``eval/perplexity`` of the policy on the task's reference completions,
    ``eval/distinct_1``/``eval/distinct_2`` and ``episode/length`` (tokens, EOS included).
    """
    config = config or EvalConfig()
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
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
        with autocast(dev):
            rollout = env.rollout(model, iteration_seeds(seed, i, 0, batch), config.temperature, config.top_k, generator)
        n = min(batch, episodes - done)
        c = rollout.completions
        if reference is not None:
            out, P = sequence_forward(reference, rollout.prompt_ids, rollout.prompt_mask, c.ids, c.mask)
            ref_lp = token_logprobs(out.logits[:, P - 1 : P - 1 + c.ids.shape[1]], c.ids, config.temperature)
            sums["kl"] += float(((c.logprobs - ref_lp) * c.mask).sum(1)[:n].sum())
        refs = tokenizer([r + tokenizer.eos_token for r in env.references()], add_special_tokens=False,
                         return_tensors="pt", padding=True)
        ref_ids, ref_mask = refs["input_ids"].to(dev), refs["attention_mask"].to(dev)
        out, P = sequence_forward(model, rollout.prompt_ids, rollout.prompt_mask, ref_ids, ref_mask)
        nll = -token_logprobs(out.logits[:, P - 1 : P - 1 + ref_ids.shape[1]], ref_ids, 1.0) * ref_mask
        sums["nll"] += float(nll[:n].sum())
        sums["ref_tokens"] += float(ref_mask[:n].sum())
        sums["reward"] += float(rollout.score[:n].sum())
        sums["gold"] += float(rollout.gold[:n].sum())
        sums["length"] += float(c.lengths[:n].sum())
        sequences += [row[:length] for row, length in zip(c.ids[:n].tolist(), c.lengths[:n].tolist())]
        done += n
    env.close()
    return {
        "objective/reward": sums["reward"] / done,
        "objective/gold_reward": sums["gold"] / done,
        "objective/kl": sums["kl"] / done,
        "eval/perplexity": math.exp(sums["nll"] / max(sums["ref_tokens"], 1.0)),
        "eval/distinct_1": distinct_n(sequences, 1),
        "eval/distinct_2": distinct_n(sequences, 2),
        "episode/length": sums["length"] / done,
    }
