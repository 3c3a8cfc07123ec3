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
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from agents.metrics import GOLD_REWARD, KL
from benchmarks.grouping import Grouped, group_records, tags
from benchmarks.records import RunRecord

Form = Literal["bon", "rl"]
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
    points: int

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


def fit_overoptimisation(kl: Sequence[float], gold: Sequence[float], form: Form, baseline: float = 0.0) -> OveroptFit:
    """Least-squares fit of ``gold - baseline`` against d = sqrt(``kl``) in Gao et al.'s ``form``.

    Needs at least two distinct KL values > 0 (two parameters); negative KL estimates (sampling noise
    around 0) are clipped to 0. R^2 is measured on ``gold - baseline`` around its mean.
    """
    kl, gold = np.asarray(kl, dtype=float), np.asarray(gold, dtype=float)
    if kl.shape != gold.shape:
        raise ValueError(f"kl and gold must have the same shape, got {kl.shape} and {gold.shape}")
    keep = np.isfinite(kl) & np.isfinite(gold)
    kl, gold = np.clip(kl[keep], 0.0, None), gold[keep]
    distinct = len(np.unique(kl[kl > 0]))
    if distinct < 2:  # two parameters: one KL value (however many runs) cannot separate alpha from beta
        raise ValueError(f"fitting the {form!r} form needs >= 2 distinct KL values > 0, got {distinct}")
    d = np.sqrt(kl)
    x, y = _design(d, form), gold - baseline
    (alpha, minus_beta), *_ = np.linalg.lstsq(x, y, rcond=None)
    beta = -minus_beta
    residual = y - x @ np.array([alpha, minus_beta])
    total = ((y - y.mean()) ** 2).sum()
    r2 = float(1 - (residual**2).sum() / total) if total > 0 else float("nan")
    peak_d = _peak_d(float(alpha), float(beta), form)
    peak_gold = float("nan") if math.isinf(peak_d) else baseline + float(_design(np.array([peak_d]), form)[0] @ [alpha, minus_beta])
    return OveroptFit(form, float(alpha), float(beta), r2, peak_d**2, peak_gold, float(baseline), int(len(kl)))


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


def start_gold(grouped: Grouped, env_id: str, start: str) -> float:
    """Mean final gold reward of the start policy's runs (the ``start`` row) on ``env_id``; 0 without them."""
    runs = [r.final.get(GOLD_REWARD) for r in grouped.get(start, {}).get(env_id, [])]
    runs = [g for g in runs if g is not None]
    return float(np.mean(runs)) if runs else 0.0


def fit_records(records: list[RunRecord], reference: str = "best-of-n", start: str = "best-of-n_1") -> list[FitRow]:
    """Gao et al. fits for one track's records: per env (and per reward model of a sweep), best-of-n
    from the final (KL, gold) of every row whose label starts with ``reference`` (one row per n), and
    each other row from the (KL, gold) points of its learning curves (the policy along training),
    gold measured over the ``start`` row."""
    by_rm: dict[Any, list[RunRecord]] = {}
    for r in records:
        by_rm.setdefault(tags(r).get("rm"), []).append(r)
    out = []
    for rm, subset in sorted(by_rm.items(), key=lambda item: str(item[0])):
        grouped = group_records(subset, with_rm=False)
        suffix = f" [{rm}]" if rm is not None else ""
        for env_id in sorted({r.env_id for r in subset}):
            baseline = start_gold(grouped, env_id, start)
            bon = [r for label, by_env in grouped.items() if label.startswith(reference) for r in by_env.get(env_id, [])]
            candidates = [(f"{reference} (all n)", "bon", bon, False)] if bon else []
            candidates += [(label, "rl", by_env[env_id], True) for label, by_env in sorted(grouped.items())
                           if not label.startswith(reference) and env_id in by_env]
            for label, form, runs, from_curve in candidates:
                kl, gold = _points(runs, from_curve)
                try:
                    out.append(FitRow(env_id, label + suffix, fit_overoptimisation(kl, gold, form, baseline)))
                except ValueError as err:
                    out.append(FitRow(env_id, label + suffix, None, str(err)))
    return out
