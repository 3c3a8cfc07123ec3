"""DAPO, Decoupled Clip and Dynamic sAmpling Policy Optimization (Yu et al. 2025, "DAPO: An Open-Source
LLM Reinforcement Learning System at Scale"): GRPO with clip-higher (``epsilon_high`` 0.28 above
``epsilon`` 0.2), the dynamic-sampling filter (groups whose completions all score alike are dropped
from the update), token-level loss averaging (``loss_type="dapo"``) and no KL term (``beta`` 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agents.rl.grpo import GRPO, GRPOConfig


@dataclass
class DAPOConfig(GRPOConfig):
    beta: float = field(default=0.0, metadata={"help": "weight of the k3 KL term in the loss (DAPO: none)"})
    epsilon_high: float | None = field(default=0.28, metadata={"help": "upper clip 1 + epsilon_high (clip-higher)"})
    dynamic_sampling: bool = field(default=True, metadata={
        "help": "train only on groups whose scores differ (the dynamic-sampling filter)"})


class DAPO(GRPO):
    name = "dapo"
    config_class = DAPOConfig
