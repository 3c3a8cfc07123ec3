"""Reward-model over-optimisation, measured: Gao et al.'s functional forms fitted to gold reward vs KL.

Why these forms: Gao, Schulman and Hilton (2023, "Scaling Laws for Reward Model Over-optimization")
found that the gold reward gained over the start policy follows, with d = sqrt(KL(policy || start)),

- best-of-n:  R(d) = d (alpha - beta d)
- RL:         R(d) = d (alpha - beta log d)

so two numbers summarise how much an optimiser gains per unit of distance (alpha) and how fast the
proxy's errors eat that gain (beta). Both forms are linear in (alpha, beta), so the fit is an
ordinary least-squares solve with no intercept (R(0) = 0 by construction: the start policy gains
nothing over itself); the gold reward of the start policy is subtracted first (``baseline``).
The peak follows in closed form: best-of-n peaks at d* = alpha / (2 beta), RL at
d* = exp(alpha / beta - 1); with beta <= 0 the fitted curve never turns down (no peak seen).

What is fitted: the mean gold reward at each KL, not single noisy samples. Best-of-n has one KL per n
(the mean over its runs is one point per n); an RL algorithm's points are the iterations of all its
runs (the policy along training, scored on its own on-policy batch), pooled and cut into equal-count
KL bins. A training batch's gold is a 64-sample mean whose noise dwarfs the trend, so R^2 on raw
iterations says little about the form; R^2 on bin means says how well the form follows the mean.
A closed-form peak outside the measured KL range is an extrapolation and is reported as such, beside
the measured peak (the KL and gold of the best bin).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from agents.metrics import GOLD_REWARD, KL
from benchmarks.grouping import Grouped, group_records, tags
from benchmarks.records import RunRecord

Form = Literal["bon", "rl"]
KL_BINS = 20  # equal-count KL bins an RL algorithm's iterations are pooled into (see module doc)
FORMS: tuple[Form, ...] = ("bon", "rl")


@dataclass(frozen=True)
class OveroptFit:
    """A fitted over-optimisation curve; ``peak_kl``/``peak_gold`` are ``inf``/NaN when beta <= 0."""

    form: Form
    alpha: float
    beta: float
    r2: float
    peak_kl: float
    peak_gold: float  # the fitted gold reward at the peak, baseline added back
    baseline: float
    points: int  # the (KL, gold) observations behind the fit
    bins: int  # the KL bin means the fit was made to
    min_kl: float  # the smallest bin-mean KL: a peak before it is at the start
    max_kl: float  # the largest bin-mean KL: a peak beyond it is extrapolated
    measured_peak_kl: float  # the bin with the highest mean gold
    measured_peak_gold: float

    @property
    def peak_measured(self) -> bool:
        """Whether the fitted peak lies within the measured KL range (not an extrapolation)."""
        return math.isfinite(self.peak_kl) and self.min_kl <= self.peak_kl <= self.max_kl

    def predict(self, kl: np.ndarray) -> np.ndarray:
        """Fitted gold reward (baseline included) at ``kl``."""
        return self.baseline + _design(np.sqrt(np.asarray(kl, dtype=float)), self.form) @ np.array([self.alpha, -self.beta])

    def as_dict(self) -> dict[str, float | str | int]:
        return asdict(self)


def _design(d: np.ndarray, form: Form) -> np.ndarray:
    """Columns multiplying (alpha, -beta): (d, d^2) for best-of-n, (d, d log d) for RL (0 at d = 0)."""
    if form == "bon":
        second = d * d
    elif form == "rl":
        with np.errstate(divide="ignore", invalid="ignore"):
            second = np.where(d > 0, d * np.log(np.where(d > 0, d, 1.0)), 0.0)
    else:
        raise ValueError(f"unknown over-optimisation form {form!r}; use one of {FORMS}")
    return np.stack([d, second], axis=-1)


def kl_bin_means(kl: np.ndarray, gold: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean KL and mean gold per bin, in KL order: one bin per distinct KL when there are at most ``bins``
    of them (best-of-n: one per n), else ``bins`` bins of (nearly) equal counts along sorted KL."""
    values = np.unique(kl)
    if len(values) <= bins:
        index = np.searchsorted(values, kl)
        counts = np.bincount(index, minlength=len(values))
        return values, np.bincount(index, weights=gold, minlength=len(values)) / counts
    order = np.argsort(kl, kind="stable")
    parts = np.array_split(order, bins)
    return np.array([kl[p].mean() for p in parts]), np.array([gold[p].mean() for p in parts])


def fit_overoptimisation(kl: Sequence[float], gold: Sequence[float], form: Form, baseline: float = 0.0,
                         bins: int = KL_BINS) -> OveroptFit:
    """Least-squares fit of the mean ``gold - baseline`` against d = sqrt(``kl``) in Gao et al.'s ``form``.

    The observations are first reduced to at most ``bins`` KL bin means (``kl_bin_means``; see module doc).
    Needs at least two distinct KL values > 0 (two parameters); negative KL estimates (sampling noise
    around 0) are clipped to 0. R^2 is measured on the bin means' ``gold - baseline`` around their mean.
    """
    kl, gold = np.asarray(kl, dtype=float), np.asarray(gold, dtype=float)
    if kl.shape != gold.shape:
        raise ValueError(f"kl and gold must have the same shape, got {kl.shape} and {gold.shape}")
    keep = np.isfinite(kl) & np.isfinite(gold)
    kl, gold = np.clip(kl[keep], 0.0, None), gold[keep]
    distinct = len(np.unique(kl[kl > 0]))
    if distinct < 2:  # two parameters: one KL value (however many runs) cannot separate alpha from beta
        raise ValueError(f"fitting the {form!r} form needs >= 2 distinct KL values > 0, got {distinct}")
    observations = len(kl)
    kl, gold = kl_bin_means(kl, gold, bins)
    best = int(np.argmax(gold))
    d = np.sqrt(kl)
    x, y = _design(d, form), gold - baseline
    (alpha, minus_beta), *_ = np.linalg.lstsq(x, y, rcond=None)
    beta = -minus_beta
    residual = y - x @ np.array([alpha, minus_beta])
    total = ((y - y.mean()) ** 2).sum()
    r2 = float(1 - (residual**2).sum() / total) if total > 0 else float("nan")
    peak_d = _peak_d(float(alpha), float(beta), form)
    peak_gold = float("nan") if math.isinf(peak_d) else baseline + float(_design(np.array([peak_d]), form)[0] @ [alpha, minus_beta])
    return OveroptFit(form, float(alpha), float(beta), r2, peak_d**2, peak_gold, float(baseline), observations,
                      len(kl), float(kl.min()), float(kl.max()), float(kl[best]), float(gold[best]))


def _peak_d(alpha: float, beta: float, form: Form) -> float:
    if beta <= 0:
        return math.inf
    if form == "bon":
        return max(alpha / (2 * beta), 0.0)
    exponent = alpha / beta - 1
    return math.exp(exponent) if exponent < 700 else math.inf


@dataclass(frozen=True)
class FitRow:
    """One fitted curve of the leaderboard: an optimiser on one env (``fit`` is None when it could not be fitted)."""

    env_id: str
    label: str
    fit: OveroptFit | None
    reason: str = ""


def _points(records: list[RunRecord], from_curve: bool) -> tuple[list[float], list[float]]:
    kl, gold = [], []
    for r in records:
        points = r.curve if from_curve else [r.final]
        for p in points:
            if p.get(KL) is not None and p.get(GOLD_REWARD) is not None:
                kl.append(float(p[KL]))
                gold.append(float(p[GOLD_REWARD]))
    return kl, gold


def _natural(text: str) -> list[Any]:
    """Sort key that orders embedded numbers by value: feedback128 < feedback512 < feedback2048."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def start_gold(grouped: Grouped, env_id: str, start: str) -> float:
    """Mean final gold reward of the start policy's runs (the ``start`` row) on ``env_id``; 0 without them."""
    runs = [r.final.get(GOLD_REWARD) for r in grouped.get(start, {}).get(env_id, [])]
    runs = [g for g in runs if g is not None]
    return float(np.mean(runs)) if runs else 0.0


def first_batch_gold(runs: list[RunRecord]) -> float | None:
    """Mean gold of the first logged iteration of every run with a curve (None without them).

    That batch is the start policy (KL 0) sampled on training prompts: the baseline of a curve fit has
    to come from the same prompts as the curve, since a task's training and held-out prompts can differ
    in gold by several points (on Sort the SFT start scores 0.31-0.35 on its first training batches and
    0.37 held out), which a fit through R(0) = 0 would otherwise read as gold falling from the start."""
    firsts = [r.curve[0][GOLD_REWARD] for r in runs if r.curve and r.curve[0].get(GOLD_REWARD) is not None]
    return float(np.mean(firsts)) if firsts else None


def fit_records(records: list[RunRecord], reference: str = "best-of-n", start: str = "best-of-n_1") -> list[FitRow]:
    """Gao et al. fits for one track's records: per env (and per reward model of a sweep), best-of-n
    from the final (KL, gold) of every row whose label starts with ``reference`` (one row per n), gold
    measured over the ``start`` row's; each other row from the (KL, gold) points of its learning curves
    (the policy along training), gold measured over the first training batch of all of them
    (``first_batch_gold``)."""
    by_rm: dict[Any, list[RunRecord]] = {}
    for r in records:
        by_rm.setdefault(tags(r).get("rm"), []).append(r)
    out = []
    for rm, subset in sorted(by_rm.items(), key=lambda item: _natural(str(item[0]))):
        grouped = group_records(subset, with_rm=False)
        suffix = f" [{rm}]" if rm is not None else ""
        for env_id in sorted({r.env_id for r in subset}):
            held_out = start_gold(grouped, env_id, start)
            bon = [r for label, by_env in grouped.items() if label.startswith(reference) for r in by_env.get(env_id, [])]
            learners = {label: by_env[env_id] for label, by_env in sorted(grouped.items())
                        if not label.startswith(reference) and env_id in by_env}
            on_training = first_batch_gold([r for runs in learners.values() for r in runs])
            candidates = [(f"{reference} (all n)", "bon", bon, False, held_out)] if bon else []
            candidates += [(label, "rl", runs, True, held_out if on_training is None else on_training)
                           for label, runs in learners.items()]
            for label, form, runs, from_curve, baseline in candidates:
                kl, gold = _points(runs, from_curve)
                if not kl:  # offline learners (DPO) sample nothing while training
                    out.append(FitRow(env_id, label + suffix, None, "it logged no KL and gold along training"))
                    continue
                try:
                    out.append(FitRow(env_id, label + suffix, fit_overoptimisation(kl, gold, form, baseline)))
                except ValueError as err:
                    out.append(FitRow(env_id, label + suffix, None, str(err)))
    return out
