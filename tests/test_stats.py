"""The Agarwal et al. (2021) estimators in benchmarks/stats.py, checked against independent computations."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats as scipy_stats

from benchmarks.stats import (
    bootstrap,
    difference_of_means,
    iqm,
    iqm_over_groups,
    mean_over_groups,
    performance_profile,
    performance_profile_band,
    probability_of_improvement,
)


def test_iqm_is_scipy_trim_mean_and_the_overall_iqm_pools_envs():
    rng = np.random.default_rng(0)
    for n in (1, 2, 4, 7, 10, 33):
        x = rng.normal(size=n)
        assert iqm(x) == pytest.approx(scipy_stats.trim_mean(x, 0.25))
    a, b = rng.normal(size=5), rng.normal(size=7)
    assert iqm_over_groups([a, b]) == pytest.approx(scipy_stats.trim_mean(np.concatenate([a, b]), 0.25))
    assert mean_over_groups([np.array([1.0, 3.0]), np.array([10.0])]) == pytest.approx(6.0)  # envs weigh equally


def exhaustive_improvement(x, y):
    """P(x > y) + P(x = y)/2 by listing every pair."""
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(x, y))
    return wins / (len(x) * len(y))


def test_probability_of_improvement_matches_exhaustive_enumeration():
    x_groups = [np.array([1.0, 2.0, 3.0]), np.array([0.5, 0.9])]
    y_groups = [np.array([2.0, 2.0]), np.array([0.1, 0.9, 1.0])]
    # env 0: pairs (1,2)x2 lose, (2,2)x2 tie, (3,2)x2 win -> (0 + 1 + 2) / 6 = 0.5
    assert exhaustive_improvement(x_groups[0], y_groups[0]) == 0.5
    expected = np.mean([exhaustive_improvement(x, y) for x, y in zip(x_groups, y_groups)])
    est = probability_of_improvement(x_groups, y_groups, reps=500)
    assert est.point == pytest.approx(expected)
    assert est.low <= est.point <= est.high
    reverse = probability_of_improvement(y_groups, x_groups, reps=500)
    assert reverse.point == pytest.approx(1 - expected)  # P(Y > X) = 1 - P(X > Y) with ties halved


def test_probability_of_improvement_bootstrap_is_the_exact_resampling_distribution_on_a_tiny_sample():
    """With one env, 2 runs of X and 2 of Y there are 16 equally likely resamples: compare their
    exact distribution of P(X > Y) with the Monte-Carlo draws' mean and spread."""
    x, y = np.array([0.0, 2.0]), np.array([1.0, 3.0])
    values = [exhaustive_improvement(xs, ys) for xs in itertools.product(x, repeat=2) for ys in itertools.product(y, repeat=2)]
    est = probability_of_improvement([x], [y], reps=20000, seed=1)
    # The exact bootstrap quantiles (inverted CDF: the distribution has atoms, 1/16 of its mass at 1.0).
    assert est.low == np.percentile(values, 2.5, method="inverted_cdf") == 0.0
    assert est.high == np.percentile(values, 97.5, method="inverted_cdf") == 1.0
    assert est.point == exhaustive_improvement(x, y) == 0.25


def test_a_clear_winner_has_an_interval_above_one_half_and_envs_missing_a_side_are_dropped():
    rng = np.random.default_rng(2)
    better = [rng.normal(1.0, 0.1, 5) for _ in range(3)]
    worse = [rng.normal(0.0, 0.1, 5) for _ in range(3)]
    est = probability_of_improvement(better + [np.array([])], worse + [np.array([0.3])])
    assert est.point == 1.0 and est.low > 0.5
    assert np.isnan(probability_of_improvement([np.array([])], [np.array([1.0])]).point)
    with pytest.raises(ValueError, match="same envs"):
        probability_of_improvement([np.array([1.0])], [])


def test_difference_of_means_by_hand_and_its_exact_bootstrap_on_a_tiny_sample():
    # env 0: mean(1, 2, 3) - mean(0, 1) = 1.5; env 1: mean(4) - mean(1, 1) = 3; envs weigh equally -> 2.25
    x_groups, y_groups = [np.array([1.0, 2.0, 3.0]), np.array([4.0])], [np.array([0.0, 1.0]), np.array([1.0, 1.0])]
    est = difference_of_means(x_groups, y_groups)
    assert est.point == pytest.approx(2.25)
    assert difference_of_means([np.array([0.0, 1.0])], [np.array([1.0, 2.0, 3.0])]).point == pytest.approx(-1.5)
    # one env, 2 runs each: 16 equally likely resamples; their exact 2.5/97.5% quantiles are the interval
    x, y = np.array([0.0, 2.0]), np.array([1.0, 3.0])
    values = [np.mean(xs) - np.mean(ys)
              for xs in itertools.product(x, repeat=2) for ys in itertools.product(y, repeat=2)]
    est = difference_of_means([x], [y], reps=20000, seed=1)
    assert est.point == -1.0
    assert est.low == np.percentile(values, 2.5, method="inverted_cdf") == -3.0
    assert est.high == np.percentile(values, 97.5, method="inverted_cdf") == 1.0
    with pytest.raises(ValueError, match="same envs"):
        difference_of_means([np.array([1.0])], [])


def test_difference_of_means_interval_excludes_zero_only_for_a_real_gain():
    rng = np.random.default_rng(3)
    start = [rng.normal(0.3, 0.05, 10) for _ in range(3)]
    gain = difference_of_means([s + 0.2 for s in start], start, reps=4000)
    assert gain.point == pytest.approx(0.2) and gain.low > 0
    same = difference_of_means([rng.normal(0.3, 0.05, 10) for _ in range(3)], start, reps=4000)
    assert same.low < 0 < same.high


def test_performance_profile_by_hand_and_its_band():
    groups = [np.array([0.1, 0.5, 0.9, 0.9]), np.array([0.2, 0.4])]
    taus = np.array([0.0, 0.3, 0.9])
    # env 0: above 0.0 -> 4/4, above 0.3 -> 3/4, above 0.9 -> 0/4; env 1: 2/2, 1/2, 0/2
    expected = np.array([(1 + 1) / 2, (0.75 + 0.5) / 2, 0.0])
    assert performance_profile(groups, taus) == pytest.approx(expected)
    profile, low, high = performance_profile_band(groups, taus, reps=500)
    assert profile == pytest.approx(expected)
    assert np.all(low <= profile) and np.all(profile <= high)
    assert np.all(np.diff(profile) <= 0)  # a profile never rises with tau


def test_bootstrap_interval_shrinks_with_more_runs_and_is_seeded():
    rng = np.random.default_rng(3)
    few, many = [rng.normal(size=5)], [rng.normal(size=200)]
    width = lambda e: e.high - e.low  # noqa: E731
    assert width(bootstrap(many, mean_over_groups)) < width(bootstrap(few, mean_over_groups))
    assert bootstrap(few, iqm_over_groups, seed=4) == bootstrap(few, iqm_over_groups, seed=4)


def test_two_level_bootstrap_puts_the_preparation_spread_in_the_interval():
    """Two preparations whose runs agree within but differ between: resampling preparations gives
    means a, (a+b)/2, b with probabilities 1/4, 1/2, 1/4, so the 95% interval is exactly [a, b];
    treating the 10 runs as independent gives a much narrower one."""
    runs = np.array([0.2] * 5 + [0.6] * 5)
    preps = np.array([0] * 5 + [1] * 5)
    clustered = bootstrap([runs], mean_over_groups, reps=4000, clusters=[preps])
    assert (clustered.point, clustered.low, clustered.high) == (pytest.approx(0.4), pytest.approx(0.2), pytest.approx(0.6))
    pooled = bootstrap([runs], mean_over_groups, reps=4000)
    assert pooled.high - pooled.low < 0.3
    # Unequal preparations: every resample keeps the smallest preparation's size per drawn preparation.
    uneven = bootstrap([np.array([0.2, 0.2, 0.2, 0.6, 0.6])], mean_over_groups, reps=4000,
                       clusters=[np.array([0, 0, 0, 1, 1])])
    assert (uneven.low, uneven.high) == (pytest.approx(0.2), pytest.approx(0.6))
    # One preparation: the ordinary bootstrap.
    assert bootstrap([runs], mean_over_groups, clusters=[np.zeros(10)]) == pooled
    with pytest.raises(ValueError, match="one id per run"):
        bootstrap([runs], mean_over_groups, clusters=[preps[:3]])


def test_probability_of_improvement_resamples_preparations_too():
    x = np.array([0.5] * 4 + [0.1] * 4)
    y = np.array([0.3] * 8)
    preps = np.array([0] * 4 + [1] * 4)
    clustered = probability_of_improvement([x], [y], reps=4000, x_clusters=[preps], y_clusters=[preps])
    assert clustered.point == 0.5 and (clustered.low, clustered.high) == (0.0, 1.0)  # one preparation wins, one loses
    pooled = probability_of_improvement([x], [y], reps=4000)
    assert pooled.high - pooled.low < 1.0
