"""The reward-hacking monitor on scripted iteration reports: metrics by hand, the stop rule's timing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from agents.metrics import ENSEMBLE_LOWER, ENSEMBLE_MEAN, ENSEMBLE_STD, HACKING_ALARM, PROXY_GOLD_CORR, PROXY_GOLD_GAP
from agents.reward_monitor import RewardMonitor, RewardMonitorConfig


@dataclass
class Report:
    """A local stand-in for the trainers' IterationReport (same fields)."""

    iteration: int
    samples_seen: int
    prompts: list[str]
    completions: list[str]
    metadata: list[dict[str, Any]]
    proxy: np.ndarray
    gold: np.ndarray
    metrics: dict[str, float] = field(default_factory=dict)


def report(iteration: int, proxy, gold, completions=None) -> Report:
    n = len(proxy)
    return Report(iteration, iteration * n, [f"p{i}" for i in range(n)], completions or [f"c{i}" for i in range(n)],
                  [{} for _ in range(n)], np.asarray(proxy, float), np.asarray(gold, float))


def test_proxy_gold_metrics_by_hand():
    r = report(1, [1.0, 0.0, 0.5], [0.0, 0.0, 1.0])
    assert RewardMonitor().on_iteration_end(r) is False
    assert r.metrics[PROXY_GOLD_GAP] == pytest.approx(((1 - 0) + (0 - 0) + (0.5 - 1)) / 3)
    assert r.metrics[PROXY_GOLD_CORR] == pytest.approx(np.corrcoef([1, 0, 0.5], [0, 0, 1])[0, 1])
    assert r.metrics[HACKING_ALARM] == 0.0
    same = report(2, [0.2, 0.2], [0.2, 0.2])  # verifier track: proxy is gold
    RewardMonitor().on_iteration_end(same)
    assert same.metrics[PROXY_GOLD_CORR] == 1.0 and same.metrics[PROXY_GOLD_GAP] == 0.0


def length_member(scale):
    """A fake reward model: scale * completion length, scoring the whole batch in one call."""
    calls = []

    def score(prompts, completions, metadata):
        calls.append(len(completions))
        return scale * np.array([len(c) for c in completions], dtype=float)

    score.calls = calls
    return score


def test_ensemble_disagreement_and_lower_bound_by_hand():
    members = [length_member(1.0), length_member(3.0)]
    r = report(1, [0.0, 0.0], [0.0, 0.0], completions=["a", "abcd"])
    RewardMonitor(RewardMonitorConfig(lower_bound_k=0.5), ensemble=members).on_iteration_end(r)
    # sample "a": scores 1, 3 -> mean 2, std 1; sample "abcd": 4, 12 -> mean 8, std 4
    assert r.metrics[ENSEMBLE_MEAN] == pytest.approx((2 + 8) / 2)
    assert r.metrics[ENSEMBLE_STD] == pytest.approx((1 + 4) / 2)  # members' disagreement, not the spread of means (3)
    assert r.metrics[ENSEMBLE_LOWER] == pytest.approx(((2 - 0.5 * 1) + (8 - 0.5 * 4)) / 2)
    assert [m.calls for m in members] == [[2], [2]]  # one batched call per member per iteration


def test_ensemble_from_reward_specs():
    monitor = RewardMonitor(RewardMonitorConfig(ensemble=["length:max_chars=2", "length:max_chars=5"]))
    r = report(1, [0.0, 0.0], [0.0, 0.0], completions=["abc", "x"])
    monitor.on_iteration_end(r)
    assert ENSEMBLE_STD in r.metrics and r.metrics[ENSEMBLE_MEAN] >= 0


def hacking_run(monitor, proxies, golds):
    """Feed one report per iteration; return the iteration training stopped at (None: ran to the end)."""
    for i, (p, g) in enumerate(zip(proxies, golds), start=1):
        if monitor.on_iteration_end(report(i, [p, p], [g, g])):
            return i
    return None


PROXY = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
GOLD = [0.1, 0.2, 0.3, 0.3, 0.25, 0.2, 0.15, 0.1]  # gold peaks at iteration 3-4, then falls


def test_stop_rule_fires_when_gold_falls_while_proxy_rises_and_not_before():
    alerts = []
    monitor = RewardMonitor(RewardMonitorConfig(stop_rule="stop", window=3, min_fall=0.01), alert=alerts.append)
    # window 3 ending at iteration 5: gold 0.3 -> 0.25 falls, proxy rises: the first iteration it fires.
    assert hacking_run(monitor, PROXY, GOLD) == 5
    assert monitor.alarms == [5] and "iteration 5" in alerts[0] and "gold reward fell 0.300 -> 0.250" in alerts[0]
    # Both rising: never fires. Both falling (training got worse, no hacking): never fires either.
    assert hacking_run(RewardMonitor(RewardMonitorConfig(stop_rule="stop", window=3)), PROXY, PROXY) is None
    assert hacking_run(RewardMonitor(RewardMonitorConfig(stop_rule="stop", window=3)), GOLD, GOLD) is None


def test_the_rule_waits_for_a_full_window():
    rising, falling = [0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]  # diverging from the first iteration on
    assert hacking_run(RewardMonitor(RewardMonitorConfig(stop_rule="stop", window=4)), rising, falling) == 4


def test_alert_mode_warns_without_stopping_and_off_mode_never_fires():
    alerts = []
    alerting = RewardMonitor(RewardMonitorConfig(stop_rule="alert", window=3, min_fall=0.01), alert=alerts.append)
    assert hacking_run(alerting, PROXY, GOLD) is None
    assert alerting.alarms == [5, 6, 7, 8] and len(alerts) == 4
    off = RewardMonitor(RewardMonitorConfig(window=3))
    assert hacking_run(off, PROXY, GOLD) is None and off.alarms == []


def test_with_an_ensemble_the_rule_watches_its_lower_bound_not_gold():
    """Gold keeps rising, but the ensemble's lower bound falls as completions grow (members disagree more)."""
    members = [length_member(1.0), length_member(-1.0)]  # disagreement grows with length; mean stays 0
    alerts = []
    monitor = RewardMonitor(RewardMonitorConfig(stop_rule="stop", window=2), ensemble=members, alert=alerts.append)
    for i, n in enumerate([1, 2, 3], start=1):
        r = report(i, [0.1 * i, 0.1 * i], [0.1 * i, 0.1 * i], completions=["x" * n, "x" * n])
        if monitor.on_iteration_end(r):
            break
    assert i == 2 and r.metrics[ENSEMBLE_LOWER] == pytest.approx(-2.0)
    assert "ensemble lower bound fell -1.000 -> -2.000" in alerts[0]


def test_bad_settings_name_the_field():
    with pytest.raises(ValueError, match="stop_rule must be 'off', 'alert' or 'stop', got 'halt'"):
        RewardMonitor(RewardMonitorConfig(stop_rule="halt"))
    with pytest.raises(ValueError, match="window must be >= 2"):
        RewardMonitor(RewardMonitorConfig(window=1))
