"""Aggregate statistics over seeds (and envs) with stratified bootstrap confidence intervals.

Why not ``rliable``: it is the reference for these estimators (Agarwal et al. 2021, "Deep RL at
the Edge of the Statistical Precipice"), but its required ``arch<8`` fails to import with the
pandas 3 our pins resolve to (``TypeError: deprecate_kwarg() missing 1 required positional
argument``). This module reimplements the pieces we use with rliable's definitions:

- the interquartile mean is ``scipy.stats.trim_mean(x, 0.25)`` (drop ``int(0.25 n)`` runs from
  each end, so with fewer than 4 runs IQM equals the mean);
- the 95% interval is a percentile bootstrap that resamples runs *within* each env (stratified),
  as ``rliable.library.get_interval_estimates`` does; when runs come from several independent
  preparations (SFT + reward model), the resampling is two-level — preparations, then runs within
  them — so a preparation effect widens the interval instead of hiding in it;
- the probability of improvement P(X > Y) is, per env, the Mann-Whitney statistic
  P(x > y) + P(x = y) / 2 over all pairs of runs, averaged over envs, with X's and Y's runs
  resampled independently within each env; the difference of means (gain over a baseline in the
  scores' units) is resampled the same way;
- a performance profile is, for each threshold tau, the mean over envs of the fraction of runs
  scoring above tau (rliable's ``create_performance_profile``).

Every bootstrap is seeded, so a leaderboard regenerated from the same records shows the same
intervals.
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


NAN_ESTIMATE = Estimate(float("nan"), float("nan"), float("nan"))


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


Clusters = Sequence[np.ndarray] | None  # per env, each run's cluster id (its preparation); None: runs independent


def _nonempty(groups: Sequence[np.ndarray], clusters: Clusters) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
    ids = list(clusters) if clusters is not None else [None] * len(groups)
    if len(ids) != len(groups):
        raise ValueError(f"clusters must give one id array per env: {len(ids)} for {len(groups)} envs")
    kept = [(np.asarray(g, dtype=float), None if c is None else np.asarray(c)) for g, c in zip(groups, ids) if len(g)]
    for g, c in kept:
        if c is not None and c.shape != g.shape:
            raise ValueError(f"clusters must give one id per run: {c.shape} ids for {g.shape} runs")
    return [g for g, _ in kept], [c for _, c in kept]


def _resample_group(g: np.ndarray, ids: np.ndarray | None, reps: int, rng: np.random.Generator) -> np.ndarray:
    """``reps`` resamples of one env's runs, shape (reps, runs). With cluster ids (several preparations),
    a two-level bootstrap: draw as many clusters as there are, with replacement, then runs within each
    drawn cluster with replacement (each cluster contributes its smallest cluster's run count, so every
    resample has the same size), so the spread between preparations widens the interval."""
    if ids is None or len(np.unique(ids)) < 2:
        return g[rng.integers(0, len(g), size=(reps, len(g)))]
    members = [g[ids == c] for c in np.unique(ids)]
    sizes = np.array([len(x) for x in members])
    k, m = len(members), int(sizes.min())
    padded = np.stack([np.pad(x, (0, sizes.max() - len(x))) for x in members])
    chosen = rng.integers(0, k, size=(reps, k))
    within = (rng.random((reps, k, m)) * sizes[chosen][..., None]).astype(int)  # uniform within each drawn cluster
    return padded[chosen[..., None], within].reshape(reps, k * m)


def _resample(groups: Sequence[np.ndarray], ids: Sequence[np.ndarray | None], reps: int,
              rng: np.random.Generator) -> list[np.ndarray]:
    """For every env independently (stratified), ``reps`` resamples of its runs."""
    return [_resample_group(g, c, reps, rng) for g, c in zip(groups, ids)]


def _interval(draws: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(draws, [tail, 100 - tail], axis=0)
    return low, high


def bootstrap(
    groups: Sequence[np.ndarray], statistic: Statistic, reps: int = 2000, seed: int = 0, confidence: float = 0.95,
    clusters: Clusters = None,
) -> Estimate:
    """``statistic`` of the per-env arrays of run scores, with a stratified percentile-bootstrap CI.

    Each resample draws, for every env independently, as many runs as it has, with replacement
    (two-level, preparations then runs, when ``clusters`` gives each run's preparation); the interval
    is the central ``confidence`` mass of the statistic over ``reps`` resamples. Empty envs are
    dropped; with no runs at all every field is NaN.
    """
    groups, ids = _nonempty(groups, clusters)
    if not groups:
        return NAN_ESTIMATE
    draws = statistic(_resample(groups, ids, reps, np.random.default_rng(seed)))
    low, high = _interval(draws, confidence)
    return Estimate(float(statistic(groups)), float(low), float(high))


def _improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(x > y) + P(x = y)/2 over all pairs of the last axes (leading axes broadcast)."""
    diff = x[..., :, None] - y[..., None, :]
    return (diff > 0).mean(axis=(-2, -1)) + 0.5 * (diff == 0).mean(axis=(-2, -1))


def _two_sample(
    x_groups: Sequence[np.ndarray], y_groups: Sequence[np.ndarray],
    statistic: Callable[[np.ndarray, np.ndarray], np.ndarray], reps: int, seed: int, confidence: float,
    x_clusters: Clusters, y_clusters: Clusters,
) -> Estimate:
    """``statistic(x, y)`` of two algorithms' runs, averaged over the envs both ran, with a stratified
    bootstrap CI: within each env X's and Y's runs are resampled independently (each by preparation,
    then run, when clusters are given). ``statistic`` reduces the last axis and broadcasts the others."""
    if len(x_groups) != len(y_groups):
        raise ValueError(f"a two-sample comparison needs the same envs for both: {len(x_groups)} vs {len(y_groups)}")
    x_ids = list(x_clusters) if x_clusters is not None else [None] * len(x_groups)
    y_ids = list(y_clusters) if y_clusters is not None else [None] * len(y_groups)
    pairs = [(np.asarray(x, float), np.asarray(y, float), cx, cy)
             for x, y, cx, cy in zip(x_groups, y_groups, x_ids, y_ids) if len(x) and len(y)]
    if not pairs:
        return NAN_ESTIMATE
    point = float(np.mean([statistic(x, y) for x, y, _, _ in pairs]))
    rng = np.random.default_rng(seed)
    draws = np.mean([statistic(*_resample([x, y], [cx, cy], reps, rng)) for x, y, cx, cy in pairs], axis=0)
    low, high = _interval(draws, confidence)
    return Estimate(point, float(low), float(high))


def probability_of_improvement(
    x_groups: Sequence[np.ndarray], y_groups: Sequence[np.ndarray], reps: int = 2000, seed: int = 0,
    confidence: float = 0.95, x_clusters: Clusters = None, y_clusters: Clusters = None,
) -> Estimate:
    """P(X > Y): the chance a run of X beats a run of Y on a random env, with a stratified bootstrap CI.

    ``x_groups[i]`` and ``y_groups[i]`` are the two algorithms' run scores on env ``i``; envs where
    either has no run are dropped. 0.5 means no difference; the interval excluding 0.5 means X is
    reliably better (or worse) than Y, whatever the scale of the scores.
    """
    return _two_sample(x_groups, y_groups, _improvement, reps, seed, confidence, x_clusters, y_clusters)


def _mean_difference(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return x.mean(axis=-1) - y.mean(axis=-1)


def difference_of_means(
    x_groups: Sequence[np.ndarray], y_groups: Sequence[np.ndarray], reps: int = 2000, seed: int = 0,
    confidence: float = 0.95, x_clusters: Clusters = None, y_clusters: Clusters = None,
) -> Estimate:
    """Mean(X) - mean(Y) per env, averaged over the envs both ran, with the same stratified bootstrap CI
    as ``probability_of_improvement``: the gain of X over Y in the scores' own units, so "improves over
    the start by 0.2 [0.15, 0.26]" reads directly, and an interval excluding 0 is a reliable gain."""
    return _two_sample(x_groups, y_groups, _mean_difference, reps, seed, confidence, x_clusters, y_clusters)


def performance_profile(groups: Sequence[np.ndarray], taus: np.ndarray) -> np.ndarray:
    """Fraction of runs scoring above each ``tau``, averaged over envs (last axis of each group = runs)."""
    taus = np.asarray(taus, dtype=float)
    return np.mean([(np.asarray(g)[..., None, :] > taus[:, None]).mean(axis=-1) for g in groups], axis=0)


def performance_profile_band(
    groups: Sequence[np.ndarray], taus: np.ndarray, reps: int = 2000, seed: int = 0, confidence: float = 0.95,
    clusters: Clusters = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(profile, low, high) at each tau; the band is the stratified bootstrap interval, tau by tau."""
    groups, ids = _nonempty(groups, clusters)
    if not groups:
        nan = np.full(len(taus), np.nan)
        return nan, nan, nan
    draws = performance_profile(_resample(groups, ids, reps, np.random.default_rng(seed)), taus)
    low, high = _interval(draws, confidence)
    return performance_profile(groups, taus), low, high


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
