"""Small, shared RL math: masked statistics, whitening, GAE, KL estimators and controllers.

Why one module: PPO, GRPO, RLOO and REINFORCE differ in how they turn rewards into advantages,
not in how they average over padded tokens or estimate KL; keeping those here means the algorithm
files show only what makes each algorithm different.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

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


def missing_eos_penalty(score: torch.Tensor, ended: torch.Tensor, penalty: float) -> torch.Tensor:
    """Subtract ``penalty`` from the score of every completion that never emitted EOS (Huang et al. 2024, #11).

    TRL replaces such scores; we subtract, so a learned reward's ranking among truncated answers survives.
    """
    return score - penalty * (~ended.bool()).float()


def token_rewards(score: torch.Tensor, kl: torch.Tensor, kl_coef: float, mask: torch.Tensor) -> torch.Tensor:
    """Per-token rewards (B, T): ``-kl_coef * kl`` at every real token, plus the score at the last one."""
    rewards = -kl_coef * kl * mask
    last = (mask.sum(1).long() - 1).clamp(min=0)
    rewards[torch.arange(len(last), device=rewards.device), last] += score
    return rewards


def returns_to_go(rewards: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Undiscounted return from each token to the end of its completion: G_t = sum_{s >= t} r_s."""
    rewards = rewards * mask
    return (rewards.flip(1).cumsum(1).flip(1)) * mask


def group_advantages(scores: torch.Tensor, group_size: int, scale: Literal["group", "batch", "none"]) -> torch.Tensor:
    """GRPO's advantage: the score minus its group's mean, divided by the group's std (``"group"``, Shao et
    al. 2024), the whole batch's std (``"batch"``) or nothing (``"none"``, Dr. GRPO, Liu et al. 2025).
    Completions of one prompt are ``group_size`` consecutive rows."""
    groups = scores.view(-1, group_size)
    centred = groups - groups.mean(1, keepdim=True)
    if scale == "group":
        centred = centred / (groups.std(1, keepdim=True) + 1e-4)
    elif scale == "batch":
        centred = centred / (scores.std() + 1e-4)
    elif scale != "none":
        raise ValueError(f"unknown scale_rewards {scale!r}; use 'group', 'batch' or 'none'")
    return centred.flatten()


def leave_one_out(returns: torch.Tensor, group_size: int) -> torch.Tensor:
    """RLOO's advantage (Ahmadian et al. 2024): each return minus the mean of the other ``group_size - 1``."""
    groups = returns.view(-1, group_size)
    others = (groups.sum(1, keepdim=True) - groups) / (group_size - 1)
    return (groups - others).flatten()


def varied_groups(scores: torch.Tensor, group_size: int) -> torch.Tensor:
    """DAPO's dynamic-sampling filter (Yu et al. 2025): True for every row of a group whose scores are
    not all equal; a group that is all right or all wrong has zero advantage and only dilutes the batch."""
    groups = scores.view(-1, group_size)
    varied = (groups.max(1).values - groups.min(1).values) > 0
    return varied.repeat_interleave(group_size)
