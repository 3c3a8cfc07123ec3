"""Reward-hacking monitor: watches proxy vs gold reward (and a reward-model ensemble) during training.

Why: the proxy a learner optimises rising while the reward we trust falls is the signature of
reward hacking (Gao et al. 2023). With a gold reward beside every proxy, every iteration can
report how far they diverge; without one (real deployments), an ensemble of reward models is the
usual stand-in: where its members disagree the proxy is off-distribution, and its lower bound
(mean - k std, Coste et al. 2024, "Reward Model Ensembles Help Mitigate Overoptimization") falls
when the policy exploits one member. The monitor is a training callback (it satisfies the
trainers' ``on_iteration_end(report) -> bool`` protocol by duck typing): it adds its metrics to
``report.metrics`` every iteration and, with ``stop_rule`` set, alerts or stops training when,
over the last ``window`` iterations, the proxy rose by more than ``min_rise`` while the ensemble's
lower bound (or, without an ensemble, the gold reward) fell by more than ``min_fall``.
"""

from __future__ import annotations

import warnings
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from agents.metrics import ENSEMBLE_LOWER, ENSEMBLE_MEAN, ENSEMBLE_STD, HACKING_ALARM, PROXY_GOLD_CORR, PROXY_GOLD_GAP
from llm_gym.rewards import make_reward


class Report(Protocol):
    """What the monitor reads from a trainer's per-iteration report."""

    iteration: int
    prompts: list[str]
    completions: list[str]
    metadata: list[Mapping[str, Any]]
    proxy: np.ndarray
    gold: np.ndarray
    metrics: dict[str, float]


@dataclass
class RewardMonitorConfig:
    """Which signals to compute and when to raise the alarm."""

    ensemble: list[str] = field(default_factory=list, metadata={
        "help": "reward specs (llm_gym.make_reward) of the reward-model ensemble; empty: proxy vs gold only"})
    lower_bound_k: float = field(default=1.0, metadata={"help": "lower bound = ensemble mean - k * ensemble std"})
    stop_rule: Literal["off", "alert", "stop"] = field(default="off", metadata={
        "help": "off: metrics only; alert: warn when the rule fires; stop: also end training"})
    window: int = field(default=5, metadata={"help": "iterations the rise and fall are measured over"})
    min_rise: float = field(default=0.0, metadata={"help": "the proxy must rise by more than this over the window"})
    min_fall: float = field(default=0.0, metadata={
        "help": "the ensemble lower bound (gold without an ensemble) must fall by more than this over the window"})


class RewardMonitor:
    """A training callback logging proxy-gold divergence and ensemble disagreement; optionally stops.

    ``ensemble`` may be given as built reward models (anything called as
    ``f(prompts, completions, metadata) -> scores``) instead of specs, e.g. in tests.
    """

    def __init__(self, config: RewardMonitorConfig | None = None, task: Any = None,
                 ensemble: Sequence[Callable[..., np.ndarray]] | None = None,
                 alert: Callable[[str], None] | None = None):
        self.config = config or RewardMonitorConfig()
        c = self.config
        if c.stop_rule not in ("off", "alert", "stop"):
            raise ValueError(f"stop_rule must be 'off', 'alert' or 'stop', got {c.stop_rule!r}")
        if c.window < 2:
            raise ValueError(f"window must be >= 2 iterations (a rise needs two points), got {c.window}")
        if ensemble is None and c.ensemble:
            ensemble = [make_reward(spec, task=task) for spec in c.ensemble]
        self.ensemble = list(ensemble or [])
        self.alert = alert or (lambda message: warnings.warn(message, stacklevel=2))
        self.history: deque[tuple[float, float]] = deque(maxlen=c.window)  # (proxy mean, guard signal)
        self.alarms: list[int] = []

    def measure(self, report: Report) -> dict[str, float]:
        """This iteration's monitor metrics (no side effects)."""
        proxy, gold = np.asarray(report.proxy, dtype=float), np.asarray(report.gold, dtype=float)
        metrics = {PROXY_GOLD_GAP: float(np.mean(proxy - gold)) if len(proxy) else float("nan"),
                   PROXY_GOLD_CORR: _correlation(proxy, gold)}
        if self.ensemble:
            scores = np.stack([np.asarray(m(report.prompts, report.completions, report.metadata), dtype=float)
                               for m in self.ensemble])  # (members, samples), each member scores the batch at once
            mean, std = scores.mean(axis=0), scores.std(axis=0)
            metrics[ENSEMBLE_MEAN] = float(mean.mean())
            metrics[ENSEMBLE_STD] = float(std.mean())
            metrics[ENSEMBLE_LOWER] = float((mean - self.config.lower_bound_k * std).mean())
        return metrics

    def on_iteration_end(self, report: Report) -> bool:
        """Add the metrics to ``report.metrics``; return True when the stop rule says stop now."""
        metrics = self.measure(report)
        guard = metrics.get(ENSEMBLE_LOWER, float(np.mean(report.gold)) if len(report.gold) else float("nan"))
        self.history.append((float(np.mean(report.proxy)), guard))
        fired = self._rule_fires()
        metrics[HACKING_ALARM] = float(fired)
        report.metrics.update(metrics)
        if not fired:
            return False
        self.alarms.append(report.iteration)
        (proxy_start, guard_start), (proxy_end, guard_end) = self.history[0], self.history[-1]
        signal = "ensemble lower bound" if self.ensemble else "gold reward"
        self.alert(f"reward hacking suspected at iteration {report.iteration}: over the last {len(self.history)} "
                   f"iterations the proxy rose {proxy_start:.3f} -> {proxy_end:.3f} while the {signal} fell "
                   f"{guard_start:.3f} -> {guard_end:.3f}")
        return self.config.stop_rule == "stop"

    def _rule_fires(self) -> bool:
        c = self.config
        if c.stop_rule == "off" or len(self.history) < c.window:
            return False
        (proxy_start, guard_start), (proxy_end, guard_end) = self.history[0], self.history[-1]
        return proxy_end - proxy_start > c.min_rise and guard_start - guard_end > c.min_fall


def _correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation; NaN when either side is constant (a verifier track has proxy == gold: 1.0)."""
    if len(x) < 2 or x.std() == 0 or y.std() == 0:
        return 1.0 if len(x) and np.array_equal(x, y) else float("nan")
    return float(np.corrcoef(x, y)[0, 1])
