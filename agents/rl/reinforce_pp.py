"""REINFORCE++ (Hu 2025, "REINFORCE++: A Simple and Efficient Approach for Aligning Large Language
Models"): no critic and no per-prompt groups; the per-token reward is ``-kl_coef`` x KL at every
token plus the score at the last, the advantage is the undiscounted return-to-go, normalised over
the whole batch (global advantage normalisation) rather than within a prompt's group. Under several
processes "the batch" is each process's share, as for PPO's advantage whitening.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from agents.rl.config import RLConfig
from agents.rl.estimators import masked_whiten, returns_to_go, token_rewards
from agents.rl.on_policy import OnPolicyAlgorithm, ScoredBatch


@dataclass
class ReinforcePPConfig(RLConfig):
    """REINFORCE++ adds no knob of its own: its difference is the advantage."""


class ReinforcePP(OnPolicyAlgorithm):
    name = "reinforce++"
    config_class = ReinforcePPConfig

    def advantages(self, batch: ScoredBatch) -> tuple[torch.Tensor, None]:
        rewards = token_rewards(batch.score, batch.kl, self.config.kl_coef, batch.mask)
        return masked_whiten(returns_to_go(rewards, batch.mask), batch.mask), None
