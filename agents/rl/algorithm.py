"""The one interface every learner implements, so benchmarks call each algorithm the same way.

``budget`` counts sampled completions (episodes), the unit GRPO/RLOO/PPO papers compare at; a
budget smaller than one batch is an error. ``env_kwargs`` go to ``gymnasium.make`` /
``make_vec`` (task, tokenizer, reward, gold_reward...): the policy and the env share a tokenizer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


@dataclass
class TrainResult:
    """Where the trained policy is and how training went (metric names as in shared CONVENTIONS)."""

    checkpoint_dir: Path
    curve: list[dict[str, float]] = field(default_factory=list)  # one {"step": samples_seen, ...} per log point
    final: dict[str, float] = field(default_factory=dict)  # evaluate() of the final policy


class Algorithm(Protocol):
    """A learner: ``train`` then ``evaluate``; see the module docstring for the units."""

    name: str

    def train(
        self, env_id: str, budget: int, seed: int, out_dir: Path, env_kwargs: dict[str, Any] | None = None
    ) -> TrainResult: ...

    def evaluate(
        self, policy_dir: Path, env_id: str, episodes: int, seed: int, env_kwargs: dict[str, Any] | None = None
    ) -> dict[str, float]:
        """Returns at least: ``objective/reward`` (proxy), ``objective/gold_reward``, ``objective/kl`` (to the
        reference), ``eval/perplexity``, ``eval/distinct_1``, ``eval/distinct_2``, ``episode/length``."""
        ...
