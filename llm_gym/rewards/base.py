"""The reward-model protocol: a batch of (prompt, completion, metadata) in, one float each out."""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Metadata = Mapping[str, Any]


@dataclass(frozen=True)
class RewardOutput:
    """Total reward per sample plus each named component, all float32 arrays of the batch size."""

    total: np.ndarray
    components: dict[str, np.ndarray]


class RewardModel(ABC):
    """Anything that scores completions in batches.

    Why batched: learned reward models are transformers, and the vector env scores every episode that
    finished in a step with one call. Subclasses implement ``__call__``; ``dense`` reward models are
    also asked about unfinished completions so the env can pay the per-step difference.
    """

    name: str = "reward"
    dense: bool = False

    @abstractmethod
    def __call__(self, prompts: Sequence[str], completions: Sequence[str], metadata: Sequence[Metadata]) -> np.ndarray:
        """Score each (prompt, completion) pair; returns a float array of len(prompts)."""

    def score(self, prompts: Sequence[str], completions: Sequence[str], metadata: Sequence[Metadata]) -> RewardOutput:
        """Total and components, validated (finite, right shape)."""
        total = check_scores(self(prompts, completions, metadata), len(prompts), self.name)
        return RewardOutput(total, {self.name: total})


class FunctionReward(RewardModel):
    """Adapts a plain function ``f(prompts, completions, metadata) -> array`` to the protocol."""

    def __init__(self, fn: Callable[..., Any], name: str | None = None, dense: bool = False):
        self.fn, self.dense = fn, dense
        self.name = name or getattr(fn, "__name__", "reward")
        if len(inspect.signature(fn).parameters) != 3:
            raise TypeError(
                f"reward function {self.name!r} must take (prompts, completions, metadata), or TRL's "
                "(prompts, completions, **columns)"
            )

    def __call__(self, prompts, completions, metadata) -> np.ndarray:
        return np.asarray(self.fn(prompts, completions, metadata))


def check_scores(scores: Any, size: int, name: str) -> np.ndarray:
    """Turn a reward model's output into float32 and fail loudly on a wrong shape or non-finite value."""
    array = np.asarray(scores, dtype=np.float32)
    if array.shape != (size,):
        raise ValueError(f"reward model {name!r} returned shape {array.shape} for a batch of {size}; expected ({size},)")
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        raise ValueError(f"reward model {name!r} returned {array[bad[0]]} (non-finite) for sample {bad[0]} of the batch")
    return array
