"""RLOO, REINFORCE Leave-One-Out (Ahmadian et al. 2024, "Back to Basics: Revisiting REINFORCE Style
Optimization for Learning from Human Feedback in LLMs"; Kool et al. 2019).

``num_generations`` completions per prompt; each completion's return (score minus ``kl_coef`` x its
KL to the reference) is compared with the mean return of the other completions of its prompt.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from agents.rl.config import RLConfig
from agents.rl.estimators import leave_one_out
from agents.rl.on_policy import OnPolicyAlgorithm, ScoredBatch


@dataclass
class RLOOConfig(RLConfig):
    num_generations: int = field(default=4, metadata={"help": "completions sampled per prompt (>= 2)"})


class RLOO(OnPolicyAlgorithm):
    name = "rloo"
    config_class = RLOOConfig

    def __init__(self, config: RLOOConfig):
        if config.num_generations < 2:
            raise ValueError(f"rloo needs num_generations >= 2 (it compares completions of one prompt), "
                             f"got {config.num_generations}")
        super().__init__(config)

    def advantages(self, batch: ScoredBatch) -> tuple[torch.Tensor, None]:
        returns = batch.score - self.config.kl_coef * batch.kl.sum(1)
        return leave_one_out(returns, batch.group_size), None
