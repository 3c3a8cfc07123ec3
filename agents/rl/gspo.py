"""GSPO, Group Sequence Policy Optimization (Zheng et al. 2025, "Group Sequence Policy Optimization"):
GRPO's group advantages with a sequence-level importance ratio, s_i = (pi(y_i|x) / pi_old(y_i|x))^(1/|y_i|),
clipped per sequence with the paper's small clip range (3e-4 below, 4e-4 above), no KL term.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from agents.rl.grpo import GRPO, GRPOConfig


@dataclass
class GSPOConfig(GRPOConfig):
    importance_sampling_level: Literal["token", "sequence"] = field(default="sequence", metadata={
        "help": "clip the importance ratio per token (GRPO) or per sequence (GSPO)"})
    epsilon: float = field(default=3e-4, metadata={"help": "lower clip of the sequence ratio, 1 - epsilon"})
    epsilon_high: float | None = field(default=4e-4, metadata={"help": "upper clip of the sequence ratio, 1 + epsilon_high"})
    beta: float = field(default=0.0, metadata={"help": "weight of the k3 KL term in the loss (GSPO: none)"})
    loss_type: Literal["grpo", "dr_grpo", "dapo"] = field(default="grpo", metadata={
        "help": "token averaging; GSPO averages each sequence, then over sequences (grpo)"})


class GSPO(GRPO):
    name = "gspo"
    config_class = GSPOConfig
