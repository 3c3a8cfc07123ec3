"""PPO for language models (Schulman et al. 2017, "Proximal Policy Optimization Algorithms"), with the
N+ implementation details of RLHF with PPO (Huang et al. 2024, "The N+ Implementation Details of
RLHF with PPO: A Case Study on TL;DR Summarization").

What is PPO here: a critic (a value head on the policy's backbone, or on its own copy); per-token
rewards that are ``-kl_coef * KL`` at every token plus the score at the last (N+ #6), optionally
whitened (#8); GAE advantages (gamma, lam), whitened (#10); the clipped surrogate and the clipped
value loss (#9); an adaptive KL coefficient when ``kl_target`` is set (Ziegler et al. 2019). The
loop (``agents.rl.on_policy``) recomputes log-probs and values with the training forward before
the update (#4-5) and penalises completions without EOS (#11).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from agents import metrics as M
from agents.rl.config import RLConfig
from agents.rl.estimators import KLController, explained_variance, gae, masked_whiten, token_rewards
from agents.rl.losses import aggregate, clipped_value_loss
from agents.rl.on_policy import MiniBatch, OnPolicyAlgorithm, ScoredBatch
from agents.rl.policy import ValueModel


@dataclass
class PPOConfig(RLConfig):
    """PPO's own knobs (TRL's names); N+ values noted where the tiny-model defaults differ."""

    num_ppo_epochs: int = field(default=4, metadata={"help": "passes over each batch"})
    num_mini_batches: int = field(default=4, metadata={"help": "optimizer steps per pass over the batch"})
    value_model: Literal["shared", "separate"] = field(default="shared", metadata={
        "help": "the critic: a value head on the policy's backbone, or on its own copy of the start model"})
    vf_coef: float = field(default=0.1, metadata={"help": "weight of the value loss"})
    cliprange_value: float = field(default=0.2, metadata={"help": "how far a value may move from its old value"})
    gamma: float = field(default=1.0, metadata={"help": "discount within a completion (N+: 1, no discounting)"})
    lam: float = field(default=0.95, metadata={"help": "GAE lambda"})
    whiten_rewards: bool = field(default=False, metadata={"help": "whiten the per-token rewards (N+ #8)"})
    kl_target: float | None = field(default=None, metadata={
        "help": "adapt kl_coef towards this per-completion KL (Ziegler et al. 2019); unset: fixed kl_coef"})
    kl_horizon: int = field(default=10_000, metadata={"help": "samples over which the adaptive kl_coef moves"})


class PPO(OnPolicyAlgorithm):
    """PPO with a critic, GAE and an optional adaptive KL coefficient (see the module docstring)."""

    name = "ppo"
    config_class = PPOConfig
    config: PPOConfig

    def __init__(self, config: PPOConfig):
        super().__init__(config)
        self.kl_controller = KLController(config.kl_coef, config.kl_target, config.kl_horizon)

    def critic(self) -> ValueModel:
        return self.config.value_model

    def state(self) -> dict[str, Any]:
        return {"kl_controller": self.kl_controller}

    def advantages(self, batch: ScoredBatch) -> tuple[torch.Tensor, torch.Tensor]:
        c, beta = self.config, self.kl_controller.value
        rewards = token_rewards(batch.score, batch.kl, beta, batch.mask)
        if c.whiten_rewards:
            rewards = masked_whiten(rewards, batch.mask, shift_mean=False)
        advantages, returns = gae(rewards, batch.values, batch.mask, c.gamma, c.lam)
        self.kl_controller.update(batch.mean(batch.kl.sum(1)), batch.samples)  # same beta on every process
        batch.metrics.update({M.KL_COEF: beta,
                              M.EXPLAINED_VARIANCE: explained_variance(batch.values, returns, batch.mask)})
        return masked_whiten(advantages, batch.mask), returns

    def loss(self, mb: MiniBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss, logged = super().loss(mb)
        c = self.config
        value_loss = aggregate(clipped_value_loss(mb.values, mb.old_values, mb.returns, c.cliprange_value),
                               mb.mask, c.loss_type, mb.tokens, mb.rows, mb.max_tokens)
        return loss + c.vf_coef * value_loss, {**logged, M.VALUE_LOSS: value_loss}
