"""Weighted sums of named reward components, and running reward normalisation."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from gymnasium.wrappers.utils import RunningMeanStd

from llm_gym.rewards.base import RewardModel, RewardOutput, check_scores


class CompositeReward(RewardModel):
    """``sum_i weight_i * component_i``; every component is reported on its own in the env's ``info``.

    The seed's dialogue reward (informativeness + relevance + fluency) is one of these; reporting the
    parts lets a benchmark see which part an agent exploits.
    """

    name = "composite"

    def __init__(self, components: Mapping[str, tuple[float, RewardModel]]):
        if not components:
            raise ValueError("a composite reward needs at least one component")
        self.components = dict(components)
        self.dense = any(model.dense for _, model in self.components.values())

    def score(self, prompts, completions, metadata) -> RewardOutput:
        parts = {
            name: check_scores(model(prompts, completions, metadata), len(prompts), name)
            for name, (_, model) in self.components.items()
        }
        total = sum(weight * parts[name] for name, (weight, _) in self.components.items())
        return RewardOutput(np.asarray(total, dtype=np.float32), parts)

    def __call__(self, prompts, completions, metadata) -> np.ndarray:
        return self.score(prompts, completions, metadata).total


class NormalizedReward(RewardModel):
    """Standardises another reward model with a running mean/std (Gymnasium's ``RunningMeanStd``).

    Statistics update on every scored batch, so early rewards are normalised with few samples; use
    ``frozen=True`` at evaluation time to stop updating.
    """

    def __init__(self, inner: RewardModel, epsilon: float = 1e-8, clip: float | None = 10.0):
        self.inner, self.epsilon, self.clip = inner, epsilon, clip
        self.name, self.dense = f"normalized_{inner.name}", inner.dense
        self.stats = RunningMeanStd(shape=())
        self.frozen = False

    def score(self, prompts, completions, metadata) -> RewardOutput:
        raw = self.inner.score(prompts, completions, metadata)
        if not self.frozen:
            self.stats.update(raw.total.astype(np.float64))
        normalized = (raw.total - self.stats.mean) / np.sqrt(self.stats.var + self.epsilon)
        if self.clip is not None:
            normalized = np.clip(normalized, -self.clip, self.clip)
        return RewardOutput(normalized.astype(np.float32), {**raw.components, self.name: normalized.astype(np.float32)})

    def __call__(self, prompts, completions, metadata) -> np.ndarray:
        return self.score(prompts, completions, metadata).total
