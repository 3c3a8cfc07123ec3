"""The policy-gradient loss terms, as small functions of tensors so each one can be pinned by a test.

Why separate from the algorithms: PPO, GRPO, DAPO, GSPO, RLOO and REINFORCE++ combine the same few
terms (the clipped surrogate, a value loss, a KL term, an entropy bonus) and differ in the ratio
they clip and in how they average over tokens; an algorithm file picks and combines them.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from agents.rl.estimators import masked_mean, masked_sum

LossType = Literal["grpo", "dr_grpo", "dapo"]


def clipped_surrogate(log_ratio: torch.Tensor, advantages: torch.Tensor, epsilon: float,
                      epsilon_high: float) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped objective per token (Schulman et al. 2017), as a loss: max(-A r, -A clip(r)).

    ``epsilon_high`` > ``epsilon`` is DAPO's clip-higher (Yu et al. 2025): more room for raising the
    probability of unlikely tokens. Returns the loss and where the clipped branch was taken.
    """
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1 - epsilon, 1 + epsilon_high)
    return torch.max(unclipped, clipped), (clipped > unclipped).float()


def sequence_log_ratio(log_ratio: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """GSPO's importance ratio (Zheng et al. 2025): log s_i = mean over tokens of log(pi / pi_old),
    the length-normalised sequence likelihood ratio, given to every token of the sequence."""
    return masked_mean(log_ratio, mask, dim=1)[:, None].expand_as(log_ratio)


def clipped_value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
                       clip: float) -> torch.Tensor:
    """Per-token value loss 0.5 * max((V - R)^2, (V_clipped - R)^2), V_clipped within ``clip`` of the old
    value (Huang et al. 2024, #9)."""
    clipped = old_values + (values - old_values).clamp(-clip, clip)
    return 0.5 * torch.max((values - returns) ** 2, (clipped - returns) ** 2)


def aggregate(per_token: torch.Tensor, mask: torch.Tensor, loss_type: LossType, tokens: float, rows: int,
              max_tokens: int) -> torch.Tensor:
    """Reduce a per-token loss of one micro-batch to its share of the minibatch loss.

    ``tokens`` and ``rows`` count the whole minibatch (all its micro-batches), so summing the
    micro-batch results gives the minibatch loss exactly. As TRL's ``loss_type``:
    ``grpo`` averages each sequence over its tokens, then over sequences (Shao et al. 2024);
    ``dr_grpo`` divides the token sum by rows x ``max_tokens`` (Liu et al. 2025, no length bias);
    ``dapo`` divides the token sum by the real tokens of the minibatch (Yu et al. 2025).
    """
    if loss_type == "grpo":
        return (masked_sum(per_token, mask, 1) / mask.sum(1).clamp(min=1)).sum() / rows
    if loss_type == "dr_grpo":
        return masked_sum(per_token, mask) / (rows * max_tokens)
    if loss_type == "dapo":
        return masked_sum(per_token, mask) / max(tokens, 1.0)
    raise ValueError(f"unknown loss_type {loss_type!r}; use 'grpo', 'dr_grpo' or 'dapo'")


def preference_log_ratios(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor,
                          length_normalised: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """log(pi / pi_ref) of each completion of a ``[chosen; rejected]`` batch from per-token log-probs (B, T):
    summed over the completion's tokens (DPO), or averaged over them (``length_normalised``: IPO, as TRL's
    ``ipo`` loss does). Returns the chosen and the rejected halves."""
    ratio = ((logprobs - ref_logprobs) * mask).sum(1)
    if length_normalised:
        ratio = ratio / mask.sum(1)
    chosen, rejected = ratio.chunk(2)
    return chosen, rejected


def dpo_loss(chosen_log_ratio: torch.Tensor, rejected_log_ratio: torch.Tensor, beta: float,
             loss_type: Literal["sigmoid", "ipo"]) -> torch.Tensor:
    """Per-pair preference loss from log(pi / pi_ref) of the chosen and the rejected completion.

    ``sigmoid`` is DPO (Rafailov et al. 2023): -log sigmoid(beta * (chosen - rejected)).
    ``ipo`` is IPO (Azar et al. 2023): (chosen - rejected - 1 / (2 beta))^2, which does not push the
    margin to infinity on deterministic preferences.
    """
    margin = chosen_log_ratio - rejected_log_ratio
    if loss_type == "sigmoid":
        return -F.logsigmoid(beta * margin)
    if loss_type == "ipo":
        return (margin - 1 / (2 * beta)) ** 2
    raise ValueError(f"unknown DPO loss_type {loss_type!r}; use 'sigmoid' or 'ipo'")
