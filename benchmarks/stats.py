"""Aggregate statistics over seeds (and envs) with stratified bootstrap confidence intervals.

Why not ``rliable``: it is the reference for these estimators (Agarwal et al. 2021, "Deep RL at
the Edge of the Statistical Precipice"), but its required ``arch<8`` fails to import with the
pandas 3 our pins resolve to, so it does not install cleanly. This module reimplements the two
pieces we use with the same definitions: the interquartile mean is ``scipy.stats.trim_mean(x,
0.25)`` (drop ``int(0.25 n)`` runs from each end, so with fewer than 4 runs IQM equals the mean),
and the 95% interval is a percentile bootstrap that resamples runs *within* each env (stratified),
as ``rliable.library.get_interval_estimates`` does. The bootstrap is seeded, so a leaderboard
regenerated from the same records shows the same intervals.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

Statistic = Callable[[Sequence[np.ndarray]], np.ndarray]


@dataclass(frozen=True)
class Estimate:
    """A point estimate and its confidence interval (NaN when there is nothing to estimate)."""

    point: float
    low: float
    high: float


def iqm(x: np.ndarray) -> np.ndarray:
    """Interquartile mean along the last axis (``scipy.stats.trim_mean(x, 0.25, axis=-1)``)."""
    x = np.sort(np.asarray(x, dtype=float), axis=-1)
    cut = int(0.25 * x.shape[-1])
    return x[..., cut : x.shape[-1] - cut].mean(axis=-1)


def mean_over_groups(groups: Sequence[np.ndarray]) -> np.ndarray:
    """Mean over envs of the per-env mean over seeds (rliable's ``aggregate_mean``)."""
    return np.mean([g.mean(axis=-1) for g in groups], axis=0)


def iqm_over_groups(groups: Sequence[np.ndarray]) -> np.ndarray:
    """IQM of all runs pooled across envs (rliable's ``aggregate_iqm``)."""
    return iqm(np.concatenate(groups, axis=-1))


def bootstrap(
    groups: Sequence[np.ndarray], statistic: Statistic, reps: int = 2000, seed: int = 0, confidence: float = 0.95
) -> Estimate:
    """``statistic`` of the per-env arrays of run scores, with a stratified percentile-bootstrap CI.

    Each resample draws, for every env independently, as many runs as it has, with replacement;
    the interval is the central ``confidence`` mass of the statistic over ``reps`` resamples.
    Empty envs are dropped; with no runs at all every field is NaN.
    """
    groups = [np.asarray(g, dtype=float) for g in groups if len(g)]
    if not groups:
        return Estimate(float("nan"), float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    resampled = [g[rng.integers(0, len(g), size=(reps, len(g)))] for g in groups]
    draws = statistic(resampled)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(draws, [tail, 100 - tail])
    return Estimate(float(statistic(groups)), float(low), float(high))


def normalized_auc(steps: Sequence[float], values: Sequence[float]) -> float:
    """Area under a learning curve divided by its step range: the curve's average height, so runs
    with different budgets or log intervals compare (a single point is its own value)."""
    steps, values = np.asarray(steps, dtype=float), np.asarray(values, dtype=float)
    keep = np.isfinite(steps) & np.isfinite(values)
    steps, values = steps[keep], values[keep]
    if len(steps) == 0:
        return float("nan")
    order = np.argsort(steps, kind="stable")
    steps, values = steps[order], values[order]
    if len(steps) == 1 or steps[-1] == steps[0]:
        return float(values.mean())
    return float(np.trapezoid(values, steps) / (steps[-1] - steps[0]))
