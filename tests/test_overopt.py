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


def test_a_negative_kl_estimate_counts_as_zero():
    """k1 KL estimates of a policy that barely moved can be slightly negative (sampling noise around 0)."""
    kl, gold = [0.5, 1.0, 2.0, 4.0], [0.30, 0.36, 0.38, 0.35]
    fit = fit_overoptimisation([-0.01] + kl, [0.25] + gold, "rl")
    at_zero = fit_overoptimisation([0.0] + kl, [0.25] + gold, "rl")
    assert (fit.alpha, fit.beta) == pytest.approx((at_zero.alpha, at_zero.beta))
    assert np.isfinite([fit.alpha, fit.beta, fit.r2]).all() and fit.min_kl == 0.0


def test_bad_inputs_name_the_cause():
    with pytest.raises(ValueError, match="needs >= 2 distinct KL values > 0, got 1"):
        fit_overoptimisation([0.0, 1.0, 1.0], [0.1, 0.3, 0.35], "bon")  # two runs at one KL: alpha, beta not separable
    with pytest.raises(ValueError, match="same shape"):
        fit_overoptimisation([1.0, 2.0], [0.1], "rl")
    with pytest.raises(ValueError, match="unknown over-optimisation form 'ppo'"):
        fit_overoptimisation([1.0, 2.0], [0.1, 0.2], "ppo")


def test_fits_from_records_split_by_reward_model_and_measure_gold_over_the_start():
    """Best-of-n records drawn exactly from d(alpha - beta d) over a start gold of 0.3, for two RMs."""
    from benchmarks.overopt import fit_records
    from benchmarks.records import RunRecord

    records = []
    for rm, (alpha, beta) in {"feedback128": (0.2, 0.15), "feedback2048": (0.4, 0.1)}.items():
        for n in (1, 4, 16, 64):
            kl = math.log(n) - (n - 1) / n
            d = math.sqrt(kl)
            for seed in range(2):
                records.append(RunRecord(f"best-of-n_{n}", "llm_gym/Sort-v0", seed, {"n": n, "tags": {"rm": rm}},
                                         final={"objective/kl": kl, "objective/gold_reward": 0.3 + d * (alpha - beta * d)}))
    fits = {row.label: row.fit for row in fit_records(records)}
    assert set(fits) == {"best-of-n (all n) [feedback128]", "best-of-n (all n) [feedback2048]"}
    better = fits["best-of-n (all n) [feedback2048]"]
    assert (better.alpha, better.beta, better.baseline) == (pytest.approx(0.4), pytest.approx(0.1), pytest.approx(0.3))
    assert better.peak_kl == pytest.approx((0.4 / 0.2) ** 2)
    assert fits["best-of-n (all n) [feedback128]"].peak_kl < better.peak_kl  # the worse RM peaks earlier


def test_rm_sweep_plot_draws_the_fitted_peak_against_the_amount_of_feedback():
    import matplotlib.pyplot as plt

    from benchmarks.plots import rm_sweep
    from benchmarks.records import RunRecord

    params = {128: (0.2, 0.2), 512: (0.3, 0.15), 2048: (0.4, 0.125)}  # more feedback: a later, higher peak (all within n = 64)
    records = []
    for feedback, (alpha, beta) in params.items():
        for n in (1, 4, 16, 64):
            kl = math.log(n) - (n - 1) / n
            d = math.sqrt(kl)
            records.append(RunRecord(f"best-of-n_{n}", "llm_gym/Sort-v0", 0,
                                     {"n": n, "tags": {"track": "rm-sweep", "rm": f"feedback{feedback}", "feedback": feedback}},
                                     final={"objective/kl": kl, "objective/gold_reward": 0.3 + d * (alpha - beta * d)}))
    fig = rm_sweep(records)
    peak_gold_line = next(line for line in fig.axes[0].lines if line.get_label().endswith("fitted peak"))
    peak_kl_line = fig.axes[1].lines[0]
    assert list(peak_gold_line.get_xdata()) == [128, 512, 2048]
    assert list(peak_gold_line.get_ydata()) == pytest.approx([0.3 + a * a / (4 * b) for a, b in params.values()])
    assert list(peak_kl_line.get_ydata()) == pytest.approx([(a / (2 * b)) ** 2 for a, b in params.values()])
    plt.close(fig)


def test_kl_bin_means_one_bin_per_distinct_kl_or_equal_count_bins():
    from benchmarks.overopt import kl_bin_means

    kl, gold = kl_bin_means(np.array([2.0, 1.0, 2.0, 1.0]), np.array([0.5, 0.1, 0.7, 0.3]), bins=20)
    assert list(kl) == [1.0, 2.0] and list(gold) == pytest.approx([0.2, 0.6])
    kl, gold = kl_bin_means(np.arange(10.0)[::-1], np.arange(10.0)[::-1] * 2, bins=5)
    assert list(kl) == [0.5, 2.5, 4.5, 6.5, 8.5] and list(gold) == pytest.approx([1.0, 5.0, 9.0, 13.0, 17.0])


def test_rl_fit_on_noisy_iterations_recovers_the_curve_from_bin_means():
    """Training-batch gold is a 64-sample mean (sd ~0.06): raw R^2 is near zero, the bin means' is not."""
    rng = np.random.default_rng(0)
    kl = rng.uniform(0.01, 4.0, 1280)
    d = np.sqrt(kl)
    gold = 0.3 + d * (0.2 - 0.15 * np.log(d)) + rng.normal(0, 0.06, len(kl))
    fit = fit_overoptimisation(kl, gold, "rl", baseline=0.3)
    assert (fit.points, fit.bins) == (1280, 20)
    assert fit.alpha == pytest.approx(0.2, abs=0.03) and fit.beta == pytest.approx(0.15, abs=0.03)
    assert fit.r2 > 0.9
    assert fit.peak_measured and fit.peak_kl == pytest.approx(math.exp(2 * (0.2 / 0.15 - 1)), rel=0.25)
    assert fit.measured_peak_gold == pytest.approx(fit.peak_gold, abs=0.03)


def test_a_peak_beyond_the_measured_kl_is_reported_as_an_extrapolation():
    from benchmarks.leaderboard import Leaderboard, _fits_table
    from benchmarks.overopt import FitRow

    kl = np.linspace(0.05, 2.0, 40)
    d = np.sqrt(kl)
    fit = fit_overoptimisation(kl, d * (0.3 - 0.02 * np.log(d)), "rl")  # turns down at KL = e^28
    assert fit.peak_kl > 1e10 and not fit.peak_measured and fit.max_kl == pytest.approx(kl_bin_max(kl))
    board = Leaderboard(per_env={}, overall=[], fits=[FitRow("llm_gym/Sort-v0", "ppo", fit)])
    (row,) = _fits_table(board)[1]
    assert row[6] == f"beyond the measured KL (> {fit.max_kl:.3g})" and row[7] == "—"
    assert "outside the data" in row[-1]


def kl_bin_max(kl: np.ndarray) -> float:
    return float(np.array_split(np.sort(kl), 20)[-1].mean())


def test_rl_fits_measure_gain_over_the_first_training_batch_not_the_held_out_start():
    """Training prompts score 0.30 at KL 0 and the held-out start 0.40: the curve's gain is over 0.30."""
    from benchmarks.overopt import fit_records
    from benchmarks.records import RunRecord

    records = [RunRecord("best-of-n_1", "llm_gym/Sort-v0", s, {}, final={"objective/kl": 0.0, "objective/gold_reward": 0.4})
               for s in range(2)]
    for seed in range(2):
        curve = [{"step": 64.0 * (i + 1), "objective/kl": kl, "objective/gold_reward": 0.3 + 0.1 * math.sqrt(kl)}
                 for i, kl in enumerate(np.linspace(0.0, 2.0, 30))]
        records.append(RunRecord("ppo", "llm_gym/Sort-v0", seed, {}, curve=curve, final={}))
    (row,) = [row for row in fit_records(records) if row.label == "ppo"]
    assert row.fit.baseline == pytest.approx(0.3) and row.fit.alpha == pytest.approx(0.1, abs=0.005)
    assert row.fit.alpha > 0  # over the held-out 0.4 the same curve would read as gold falling from the start


def test_a_peak_before_the_first_measured_kl_is_reported_at_the_start():
    from benchmarks.leaderboard import Leaderboard, _fits_table
    from benchmarks.overopt import FitRow

    kl = np.linspace(0.2, 3.0, 40)
    d = np.sqrt(kl)
    fit = fit_overoptimisation(kl, d * (-0.1 - 0.01 * np.log(d)), "rl")  # falls from the start
    assert fit.peak_kl < fit.min_kl and not fit.peak_measured
    (row,) = _fits_table(Leaderboard(per_env={}, overall=[], fits=[FitRow("llm_gym/Sort-v0", "grpo", fit)]))[1]
    assert row[6] == f"at the start (< {fit.min_kl:.3g})" and "alpha < 0" in row[-1]


def test_an_offline_learner_without_a_kl_curve_is_listed_unfitted_with_the_reason():
    from benchmarks.overopt import fit_records
    from benchmarks.records import RunRecord

    records = [RunRecord("best-of-n_1", "llm_gym/Sort-v0", 0, {}, final={"objective/kl": 0.0, "objective/gold_reward": 0.4}),
               RunRecord("dpo", "llm_gym/Sort-v0", 0, {}, curve=[{"step": 16.0, "loss/train": 0.69}],
                         final={"objective/kl": 1.2, "objective/gold_reward": 0.45})]
    (row,) = [row for row in fit_records(records) if row.label == "dpo"]
    assert row.fit is None and row.reason == "it logged no KL and gold along training"
