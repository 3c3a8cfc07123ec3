"""GRPO, Group Relative Policy Optimization (Shao et al. 2024, "DeepSeekMath: Pushing the Limits of
Mathematical Reasoning in Open Language Models"), with TRL's ``loss_type`` and ``scale_rewards``.

``num_generations`` completions per prompt; the advantage is the score minus its group's mean,
divided by the group's std (``scale_rewards="group"``; Dr. GRPO, Liu et al. 2025, uses ``"none"``).
No critic. The KL to the reference is a loss term, ``beta`` x the k3 estimate per token, not a
reward penalty (``kl_coef`` defaults to 0 here). The token average is TRL's ``loss_type``: ``grpo``,
``dr_grpo`` or ``dapo``. ``importance_sampling_level="sequence"`` clips GSPO's sequence-level ratio
(``agents.rl.gspo``); ``epsilon_high`` and ``dynamic_sampling`` are DAPO's (``agents.rl.dapo``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

from agents import metrics as M
from agents.rl.config import RLConfig
from agents.rl.estimators import group_advantages, kl_penalty, varied_groups
from agents.rl.losses import aggregate, sequence_log_ratio
from agents.rl.on_policy import MiniBatch, OnPolicyAlgorithm, ScoredBatch

@dataclass
class GRPOConfig(RLConfig):
    num_generations: int = field(default=4, metadata={"help": "completions sampled per prompt (>= 2)"})
    kl_coef: float = field(default=0.0, metadata={"help": "KL penalty in the reward (GRPO puts the KL in the loss: beta)"})
    beta: float = field(default=0.04, metadata={"help": "weight of the k3 KL(policy || reference) term in the loss"})
    scale_rewards: Literal["group", "batch", "none"] = field(default="group", metadata={
        "help": "divide centred scores by the std of the group, of the batch, or not at all (Dr. GRPO)"})
    importance_sampling_level: Literal["token", "sequence"] = field(default="token", metadata={
        "help": "clip the importance ratio per token (GRPO) or per sequence (GSPO)"})
    dynamic_sampling: bool = field(default=False, metadata={
        "help": "train only on groups whose scores differ (DAPO's dynamic-sampling filter)"})


class GRPO(OnPolicyAlgorithm):
    name = "grpo"
    config_class = GRPOConfig
    config: GRPOConfig

    def __init__(self, config: GRPOConfig):
        if config.num_generations < 2:
            raise ValueError(f"{self.name} needs num_generations >= 2 (it compares completions of one prompt), "
                             f"got {config.num_generations}")
        if config.beta < 0:
            raise ValueError(f"{self.name}: beta must be >= 0, got {config.beta}: a negative one rewards moving away "
                             "from the reference")
        super().__init__(config)

    def uses_reference(self) -> bool:
        return self.config.beta > 0 or self.config.kl_coef > 0

    def advantages(self, batch: ScoredBatch) -> tuple[torch.Tensor, None]:
        returns = batch.score - self.config.kl_coef * batch.kl.sum(1)
        return group_advantages(returns, batch.group_size, self.config.scale_rewards), None

    def keep(self, batch: ScoredBatch) -> torch.Tensor | None:
        if not self.config.dynamic_sampling:
            return None
        kept = varied_groups(batch.score, batch.group_size)
        batch.metrics[M.KEPT_FRACTION] = float(kept.float().mean())
        return kept

    def importance_log_ratio(self, log_ratio: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.config.importance_sampling_level == "sequence":
            return sequence_log_ratio(log_ratio, mask)
        return log_ratio

    def loss(self, mb: MiniBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss, logged = super().loss(mb)
        c = self.config
        if mb.ref_logprobs is None:
            return loss, logged
        kl = aggregate(kl_penalty(mb.logprobs, mb.ref_logprobs, "k3"), mb.mask, c.loss_type, mb.tokens, mb.rows,
                       mb.max_tokens)
        return loss + c.beta * kl, {**logged, M.KL_LOSS: kl}
