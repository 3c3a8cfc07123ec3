"""Leaderboard figures from results records: learning curves, reward-vs-KL frontier, over-optimisation.

Why these three: the learning curve shows how fast gold reward rises (with a 95% bootstrap band
over seeds), the frontier shows what each algorithm buys per unit of KL from the reference, and
the over-optimisation plot (Gao et al. 2023, "Scaling Laws for Reward Model Over-optimization")
shows proxy and gold reward against KL, where a proxy that keeps rising while gold falls is
reward hacking. Best-of-n is drawn in black as the reference: it reaches a KL without any
gradient step, so a learner below its gold curve is paying KL for nothing.
"""

from __future__ import annotations

import io
import math
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from agents.metrics import GOLD_REWARD as GOLD, KL, REWARD as PROXY
from benchmarks.records import RunRecord
from benchmarks.stats import bootstrap, mean_over_groups
from benchmarks.variants import row_label, variant_hash


def _labelled(records: list[RunRecord]) -> dict[str, dict[str, list[RunRecord]]]:
    """label -> env id -> records, with the leaderboard's labels."""
    variants: dict[str, set[str]] = defaultdict(set)
    for r in records:
        variants[r.algo].add(variant_hash(r))
    multi = {a for a, hashes in variants.items() if len(hashes) > 1}
    out: dict[str, dict[str, list[RunRecord]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        out[row_label(r, multi)][r.env_id].append(r)
    return out


def _grid(records: list[RunRecord], metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Seeds' curves of ``metric`` interpolated onto the union of their steps where all overlap:
    returns (steps, values[seed, step]); empty when the runs share no step range."""
    curves = []
    for r in records:
        pts = sorted((p["step"], p[metric]) for p in r.curve if p.get(metric) is not None and p.get("step") is not None)
        if pts:
            curves.append((np.array([s for s, _ in pts], float), np.array([v for _, v in pts], float)))
    if not curves:
        return np.empty(0), np.empty((0, 0))
    lo, hi = max(s[0] for s, _ in curves), min(s[-1] for s, _ in curves)
    steps = np.unique(np.concatenate([s for s, _ in curves]))
    steps = steps[(steps >= lo) & (steps <= hi)]
    return steps, np.stack([np.interp(steps, s, v) for s, v in curves])


def _band(values: np.ndarray, reps: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over seeds per step and its 95% percentile-bootstrap band (seeds resampled jointly)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, values.shape[0], size=(reps, values.shape[0]))
    draws = values[idx].mean(axis=1)
    return values.mean(axis=0), np.percentile(draws, 2.5, axis=0), np.percentile(draws, 97.5, axis=0)


def _axes(n: int, title: str) -> tuple[Figure, list]:
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.8 * rows), squeeze=False)
    fig.suptitle(title)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _colors(labels: list[str]) -> dict[str, tuple]:
    cmap = plt.get_cmap("tab10")
    return {label: cmap(i % 10) for i, label in enumerate(sorted(labels))}


def learning_curves(records: list[RunRecord], metric: str = GOLD, reps: int = 1000, seed: int = 0) -> Figure:
    """``metric`` against samples seen, one panel per env: mean over seeds with a 95% CI band."""
    grouped = _labelled(records)
    envs = sorted({r.env_id for r in records})
    colors = _colors(list(grouped))
    fig, axes = _axes(len(envs), f"Learning curves ({metric})")
    for ax, env_id in zip(axes, envs):
        for label, by_env in sorted(grouped.items()):
            steps, values = _grid(by_env.get(env_id, []), metric)
            if len(steps) == 0:
                continue
            mean, low, high = _band(values, reps, seed)
            ax.plot(steps, mean, color=colors[label], label=f"{label} (n={values.shape[0]})")
            ax.fill_between(steps, low, high, color=colors[label], alpha=0.2, linewidth=0)
        ax.set(title=env_id, xlabel="samples seen", ylabel=metric)
        ax.grid(alpha=0.3)
        if ax.has_data():
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def reward_kl_frontier(records: list[RunRecord], reps: int = 1000, seed: int = 0) -> Figure:
    """Final gold reward against final KL per run (dots) and per algorithm (mean with 95% CIs);
    the dashed line joins the algorithms no other beats on both axes (higher gold at lower KL)."""
    grouped = _labelled(records)
    envs = sorted({r.env_id for r in records})
    colors = _colors(list(grouped))
    fig, axes = _axes(len(envs), "Gold reward vs KL to the reference (final policies)")
    for ax, env_id in zip(axes, envs):
        means = []
        for label, by_env in sorted(grouped.items()):
            runs = [(r.final.get(KL), r.final.get(GOLD)) for r in by_env.get(env_id, [])]
            runs = np.array([p for p in runs if None not in p], float).reshape(-1, 2)
            if len(runs) == 0:
                continue
            kl = bootstrap([runs[:, 0]], mean_over_groups, reps=reps, seed=seed)
            gold = bootstrap([runs[:, 1]], mean_over_groups, reps=reps, seed=seed)
            ax.scatter(runs[:, 0], runs[:, 1], color=colors[label], alpha=0.35, s=14)
            ax.errorbar(kl.point, gold.point, xerr=[[kl.point - kl.low], [kl.high - kl.point]],
                        yerr=[[gold.point - gold.low], [gold.high - gold.point]], fmt="o", color=colors[label],
                        capsize=3, label=label)
            means.append((kl.point, gold.point))
        frontier, best = [], -math.inf
        for kl_value, gold_value in sorted(means):
            if gold_value > best:
                frontier.append((kl_value, gold_value))
                best = gold_value
        if len(frontier) > 1:
            ax.plot(*zip(*frontier), "--", color="gray", linewidth=1, label="frontier")
        ax.set(title=env_id, xlabel="KL(policy || reference)", ylabel="gold reward")
        ax.grid(alpha=0.3)
        if ax.has_data():
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _trajectory(records: list[RunRecord]) -> np.ndarray:
    """(KL, proxy, gold) rows sorted by KL: the seeds' mean at each shared training-curve step, or,
    for runs that logged no KL curve (best-of-n trains nothing), the mean final evaluation."""
    steps, kl = _grid(records, KL)
    _, proxy = _grid(records, PROXY)
    _, gold = _grid(records, GOLD)
    if len(steps) and proxy.shape == kl.shape == gold.shape:
        points = np.stack([kl.mean(0), proxy.mean(0), gold.mean(0)], axis=1)
    else:
        finals = [(r.final.get(KL), r.final.get(PROXY), r.final.get(GOLD)) for r in records]
        finals = [f for f in finals if None not in f]
        points = np.array([np.mean(finals, axis=0)]) if finals else np.empty((0, 3))
    return points[np.argsort(points[:, 0], kind="stable")]


def overoptimisation(records: list[RunRecord], reference: str = "best-of-n") -> Figure:
    """Proxy (solid) and gold (dashed) reward against KL, one panel per env; algorithms whose label
    starts with ``reference`` (one label per n, say ``best-of-n_4``) form the black reference curve."""
    grouped = _labelled(records)
    envs = sorted({r.env_id for r in records})
    colors = _colors(list(grouped))
    fig, axes = _axes(len(envs), "Over-optimisation: proxy (solid) and gold (dashed) reward vs KL")
    for ax, env_id in zip(axes, envs):
        reference_points = []
        for label, by_env in sorted(grouped.items()):
            traj = _trajectory(by_env.get(env_id, []))
            if label.startswith(reference):
                reference_points.append(traj)
                continue
            if len(traj):
                ax.plot(traj[:, 0], traj[:, 1], "-", marker=".", color=colors[label], label=f"{label} proxy")
                ax.plot(traj[:, 0], traj[:, 2], "--", marker=".", color=colors[label], label=f"{label} gold")
        ref = np.concatenate(reference_points) if reference_points else np.empty((0, 3))
        if len(ref):
            ref = ref[np.argsort(ref[:, 0], kind="stable")]
            ax.plot(ref[:, 0], ref[:, 1], "-", marker="s", color="black", label=f"{reference} proxy")
            ax.plot(ref[:, 0], ref[:, 2], "--", marker="s", color="black", label=f"{reference} gold")
        ax.set(title=env_id, xlabel="KL(policy || reference)", ylabel="reward")
        ax.grid(alpha=0.3)
        if ax.has_data():
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "no run logged KL", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    return fig


def render_figures(records: list[RunRecord], reference: str = "best-of-n", seed: int = 0) -> dict[str, bytes]:
    """The leaderboard's figures as PNG bytes, keyed by title (closed after rendering)."""
    figures = {
        "Learning curves": learning_curves(records, seed=seed),
        "Reward-KL frontier": reward_kl_frontier(records, seed=seed),
        "Over-optimisation": overoptimisation(records, reference=reference),
    }
    out = {}
    for title, fig in figures.items():
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=110)
        plt.close(fig)
        out[title] = buffer.getvalue()
    return out
