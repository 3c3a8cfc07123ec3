"""Gao et al.'s over-optimisation fits recover known parameters from synthetic gold-vs-KL data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmarks.overopt import fit_overoptimisation


@pytest.mark.parametrize("form, alpha, beta", [("bon", 0.8, 0.3), ("rl", 0.5, 0.2)])
def test_fit_recovers_known_parameters_and_the_peak(form, alpha, beta):
    rng = np.random.default_rng(0)
    kl = np.linspace(0.05, 30, 60)
    d = np.sqrt(kl)
    gain = d * (alpha - beta * d) if form == "bon" else d * (alpha - beta * np.log(d))
    gold = 0.25 + gain + rng.normal(0, 0.01, len(kl))
    fit = fit_overoptimisation(kl, gold, form, baseline=0.25)
    assert fit.alpha == pytest.approx(alpha, abs=0.02) and fit.beta == pytest.approx(beta, abs=0.02)
    assert fit.r2 > 0.99
    # The peak the fit reports is where its curve is highest, found numerically on a fine grid.
    grid = np.linspace(1e-6, 400, 400_001)
    curve = fit.predict(grid)
    assert fit.peak_kl == pytest.approx(grid[np.argmax(curve)], rel=1e-3)
    assert fit.peak_gold == pytest.approx(curve.max(), abs=1e-6)
    # ... and equals the closed form with the true parameters, up to the fit's error.
    true_peak_d = alpha / (2 * beta) if form == "bon" else math.exp(alpha / beta - 1)
    assert math.sqrt(fit.peak_kl) == pytest.approx(true_peak_d, rel=0.1)


def test_the_two_forms_are_told_apart_and_r2_is_low_on_noise():
    kl = np.linspace(0.1, 20, 40)
    d = np.sqrt(kl)
    bon_data = d * (0.9 - 0.25 * d)
    assert fit_overoptimisation(kl, bon_data, "bon").r2 > fit_overoptimisation(kl, bon_data, "rl").r2
    noise = np.random.default_rng(1).normal(0, 1, len(kl))
    assert fit_overoptimisation(kl, noise, "bon").r2 < 0.3


def test_a_curve_that_never_turns_down_has_no_peak():
    kl = np.linspace(0.1, 10, 20)
    fit = fit_overoptimisation(kl, 0.3 * np.sqrt(kl) + 0.05 * kl, "bon")
    assert fit.beta < 0 and math.isinf(fit.peak_kl) and math.isnan(fit.peak_gold)


def test_bad_inputs_name_the_cause():
    with pytest.raises(ValueError, match="needs >= 2 points with KL > 0, got 1"):
        fit_overoptimisation([0.0, 0.0, 1.0], [0.1, 0.1, 0.3], "bon")
    with pytest.raises(ValueError, match="same shape"):
        fit_overoptimisation([1.0, 2.0], [0.1], "rl")
    with pytest.raises(ValueError, match="unknown over-optimisation form 'ppo'"):
        fit_overoptimisation([1.0, 2.0], [0.1, 0.2], "ppo")
