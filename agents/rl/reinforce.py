"""REINFORCE with a moving-average baseline (Williams 1992, "Simple Statistical Gradient-Following
Algorithms for Connectionist Reinforcement Learning"), one completion per prompt.

The return is the sequence score minus ``kl_coef`` times the completion's KL to the reference; the
advantage is that return minus an exponential moving average of past batch-mean returns
(checkpointed with the run). With one epoch the clipped surrogate is the plain policy gradient.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from agents.rl.config import RLConfig
from agents.rl.on_policy import OnPolicyAlgorithm, ScoredBatch


@dataclass
class ReinforceConfig(RLConfig):
    baseline_decay: float = field(default=0.9, metadata={"help": "decay of the moving-average baseline"})


class MovingBaseline:
    """An exponential moving average of the mean return; the first batch uses its own mean."""

    def __init__(self, decay: float):
        self.decay, self.value, self.initialised = decay, 0.0, False

    def update(self, mean_return: float) -> None:
        self.value = mean_return if not self.initialised else self.decay * self.value + (1 - self.decay) * mean_return
        self.initialised = True

    def state_dict(self) -> dict[str, Any]:
        return {"value": self.value, "initialised": self.initialised}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.value, self.initialised = float(state["value"]), bool(state["initialised"])


class Reinforce(OnPolicyAlgorithm):
    name = "reinforce"
    config_class = ReinforceConfig
    config: ReinforceConfig

    def __init__(self, config: ReinforceConfig):
        super().__init__(config)
        self.baseline = MovingBaseline(config.baseline_decay)

    def state(self) -> dict[str, Any]:
        return {"baseline": self.baseline}

    def advantages(self, batch: ScoredBatch) -> tuple[torch.Tensor, None]:
        returns = batch.score - self.config.kl_coef * batch.kl.sum(1)
        batch_mean = batch.mean(returns)  # over all processes, so every process uses one baseline
        baseline = self.baseline.value if self.baseline.initialised else batch_mean
        self.baseline.update(batch_mean)
        return returns - baseline, None
