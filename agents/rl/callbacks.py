"""Hooks for watching a run from outside the loop (reward-hacking monitors, early stopping, custom logs).

Why a hook rather than reading ``metrics.jsonl``: a monitor often needs the samples themselves (the
texts, the per-sample proxy and gold reward) and may want to stop a run as it happens. Like SB3's
``BaseCallback._on_step``, returning True from ``on_iteration_end`` stops training; the loop then
writes a checkpoint of the current iteration, so nothing is lost.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


@dataclass
class IterationReport:
    """One finished iteration, as a monitor sees it (this process's samples; metrics averaged over processes
    are what ``metrics`` becomes after logging)."""

    iteration: int
    samples_seen: int
    prompts: list[str]
    completions: list[str]
    metadata: list[Mapping[str, Any]]
    proxy: np.ndarray  # per-sample proxy reward (what is optimised)
    gold: np.ndarray  # per-sample gold reward
    metrics: dict[str, float]  # what the loop logs this iteration; a callback may add keys before logging


class TrainingCallback(Protocol):
    """Anything with ``on_iteration_end``; return True to stop now (the checkpoint of this iteration is kept)."""

    def on_iteration_end(self, report: IterationReport) -> bool: ...
