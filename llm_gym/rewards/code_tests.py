"""The code family's reward: hidden tests run in a ``CodeSandbox``, with the failure cause reported."""

from __future__ import annotations

from typing import Any

import numpy as np

from llm_gym.rewards.base import RewardModel, RewardOutput
from llm_gym.sandbox import FAILURE_CAUSES, CodeSandbox, SandboxLimits, sandbox_jobs


class CodeTests(RewardModel):
    """Fraction of hidden tests passed, run in a ``CodeSandbox``; reports the failure cause as components.

    Reads ``metadata["tests"]``, ``metadata.get("entry_point")`` and ``metadata.get("code_prefix")``
    (HumanEval-style data, where the prompt is the start of the program). Besides ``code_tests``,
    each ``FAILURE_CAUSES`` entry is a 0/1 component (``code/timeout``...), so the env's
    ``info["reward_components"]`` says why a completion scored 0. Uses the task's sandbox when the
    task has one, so the proxy and the gold reward share one execution per completion.
    """

    name = "code_tests"

    def __init__(self, task: Any = None, workers: int = 2, cpu_seconds: int = 2, wall_seconds: float = 6.0):
        sandbox = getattr(task, "sandbox", None)
        self.sandbox = sandbox or CodeSandbox(SandboxLimits(cpu_seconds, wall_seconds), workers=workers)

    def score(self, prompts, completions, metadata) -> RewardOutput:
        results = self.sandbox.run_batch(sandbox_jobs(completions, metadata))
        total = np.array([r.reward for r in results], dtype=np.float32)
        components = {self.name: total}
        for cause in FAILURE_CAUSES:
            components[f"code/{cause}"] = np.array([r.status == cause for r in results], dtype=np.float32)
        return RewardOutput(total, components)

    def __call__(self, prompts, completions, metadata) -> np.ndarray:
        return self.score(prompts, completions, metadata).total

