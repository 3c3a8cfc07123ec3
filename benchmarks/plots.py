"""Leaderboard figures from results records: learning curves, reward-vs-KL frontier, over-optimisation,
performance profiles, the reward-model sweep and the tuning stage's curves.

Why these: the learning curve shows how fast gold reward rises (with a 95% bootstrap band over
runs), the frontier shows what each algorithm buys per unit of KL from the reference, and the
over-optimisation plot (Gao et al. 2023, "Scaling Laws for Reward Model Over-optimization")
shows proxy and gold reward against KL, where a proxy that keeps rising while gold falls is
reward hacking. Best-of-n is drawn in black as the reference: it reaches a KL without any
gradient step, so a learner below its gold curve is paying KL for nothing. Performance profiles
(Agarwal et al. 2021) show the whole distribution of final gold rewards, not one summary number;
the RM sweep shows how the peak gold reward and the KL where it peaks move as the reward model
learns from more feedback. Every figure keeps its legend outside the axes, so it never covers data.
"""

from __future__ import annotations

import io
import math

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter
from scipy.ndimage import uniform_filter1d

from agents.metrics import GOLD_REWARD as GOLD
from agents.metrics import KL
from agents.metrics import REWARD as PROXY
from benchmarks.grouping import group_records, proxy_is_gold, split_tracks, tags
from benchmarks.overopt import KL_BINS, fit_records, kl_bin_means
from benchmarks.records import RunRecord
from benchmarks.stats import bootstrap, mean_over_groups, performance_profile_band

SMOOTHING = 5  # logged points in the learning curves' moving average
THOUSANDS = FuncFormatter(lambda x, _: f"{x / 1000:g}k" if x else "0")  # sample counts: five digits overlap


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


def _finish(fig: Figure, axes: list) -> Figure:
    """One legend for the whole figure, right of the panels (outside every axes), labels deduplicated."""
    handles: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    fig.tight_layout()
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="upper left", bbox_to_anchor=(1.0, 0.95), fontsize=8,
                   frameon=False)
    return fig


def _n_of(label: str) -> int:
    """The n of a family label such as ``best-of-n_16`` (0 when it has none), for ordering shades."""
    tail = label.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _label_order(label: str) -> tuple[str, int]:
    """Sort key that puts ``best-of-n_4`` before ``best-of-n_16`` (by n, not by text)."""
    n = _n_of(label)
    return (label.rsplit("_", 1)[0] if n else label, n)


def _colors(labels: list[str], reference: str | None = None) -> dict[str, tuple]:
    """One distinct colour per label. The ``reference`` family (best-of-n: one label per n) is drawn in
    shades of grey, darker for larger n, so it reads as one baseline; every other label gets its own hue
    (tab10 without its grey, then tab20's light shades), so no two algorithms share a colour."""
    family = sorted((x for x in labels if reference and x.startswith(reference)), key=lambda x: (_n_of(x), x))
    others = sorted(x for x in labels if x not in family)
    tab10, tab20 = plt.get_cmap("tab10"), plt.get_cmap("tab20")
    hues = [tab10(i) for i in range(10) if i != 7] + [tab20(i) for i in range(1, 20, 2) if i != 15]
    colors = {label: hues[i % len(hues)] for i, label in enumerate(others)}
    greys = plt.get_cmap("Greys")
    colors.update({label: greys(0.4 + 0.55 * i / max(1, len(family) - 1)) for i, label in enumerate(family)})
    return colors


def learning_curves(records: list[RunRecord], metric: str = GOLD, reps: int = 1000, seed: int = 0,
                    window: int = SMOOTHING, reference: str = "best-of-n") -> Figure:
    """``metric`` against samples seen, one panel per env: mean over seeds with a 95% CI band, each run's
    curve first smoothed by a centred moving average over ``window`` logged points (one iteration's
    reward is a noisy batch mean; the title states the window)."""
    grouped = group_records(records)
    envs = sorted({r.env_id for r in records})
    colors = _colors(list(grouped), reference)
    curves = {(label, env_id): _grid(by_env.get(env_id, []), metric)
              for label, by_env in grouped.items() for env_id in envs}
    curves = {key: c for key, c in curves.items() if len(c[0]) >= 2}  # best-of-n logs one point: no curve
    runs: dict[str, set[int]] = {}
    for (label, _), (_, values) in curves.items():
        runs.setdefault(label, set()).add(values.shape[0])
    smoothing = f", moving average over {window} logged points" if window > 1 else ""
    fig, axes = _axes(len(envs), f"Learning curves ({metric}; mean of n runs per env, 95% CI{smoothing})")
    for ax, env_id in zip(axes, envs):
        for label in sorted(grouped, key=_label_order):
            if (label, env_id) not in curves:
                continue
            steps, values = curves[label, env_id]
            mean, low, high = _band(uniform_filter1d(values, size=window, axis=1, mode="nearest"), reps, seed)
            n = sorted(runs[label])
            ax.plot(steps, mean, color=colors[label], label=f"{label} (n={n[0]}{f'-{n[-1]}' if len(n) > 1 else ''})")
            ax.fill_between(steps, low, high, color=colors[label], alpha=0.2, linewidth=0)
        ax.set(title=env_id, xlabel="samples seen", ylabel=metric)
        ax.xaxis.set_major_formatter(THOUSANDS)
        ax.grid(alpha=0.3)
    return _finish(fig, axes)


def reward_kl_frontier(records: list[RunRecord], reps: int = 1000, seed: int = 0,
                       reference: str = "best-of-n") -> Figure:
    """Final gold reward against final KL per run (dots) and per algorithm (mean with 95% CIs);
    the dashed line joins the algorithms no other beats on both axes (higher gold at lower KL)."""
    grouped = group_records(records)
    envs = sorted({r.env_id for r in records})
    colors = _colors(list(grouped), reference)
    fig, axes = _axes(len(envs), "Gold reward vs KL to the reference (final policies)")
    for ax, env_id in zip(axes, envs):
        means = []
        for label, by_env in sorted(grouped.items(), key=lambda item: _label_order(item[0])):
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
    return _finish(fig, axes)


def _trajectory(records: list[RunRecord], final_only: bool = False, bins: int = KL_BINS) -> np.ndarray:
    """(KL, proxy, gold) rows sorted by KL: the means in ``bins`` equal-count KL bins of every logged
    iteration of every run (the points the over-optimisation fits use), or, with ``final_only``
    (best-of-n trains nothing: its point is its evaluation) or for runs that logged no KL curve, the
    mean final evaluation."""
    points = [(p[KL], p[PROXY], p[GOLD]) for r in records for p in r.curve
              if None not in (p.get(KL), p.get(PROXY), p.get(GOLD))]
    if not final_only and points:
        kl, proxy, gold = np.array(points, dtype=float).T
        kl_means, proxy_means = kl_bin_means(kl, proxy, bins)
        _, gold_means = kl_bin_means(kl, gold, bins)
        return np.stack([kl_means, proxy_means, gold_means], axis=1)
    finals = [(r.final.get(KL), r.final.get(PROXY), r.final.get(GOLD)) for r in records]
    finals = [f for f in finals if None not in f]
    return np.array([np.mean(finals, axis=0)]) if finals else np.empty((0, 3))


def overoptimisation(records: list[RunRecord], reference: str = "best-of-n") -> Figure:
    """Gold (top row) and proxy (bottom row) reward against KL, one column per env: each learner's KL-bin
    means over its runs' iterations; algorithms whose label starts with ``reference`` (one label per n,
    say ``best-of-n_4``) form the black reference curve. Each reward gets its own axes because a learned
    reward model's scale is not the verifier's (a proxy rising to 2.5 would flatten a gold curve in
    [0, 1]); where the proxy is the gold (the verifier track) the one row shows both."""
    grouped = group_records(records)
    envs = sorted({r.env_id for r in records})
    colors = _colors(list(grouped), reference)
    rows = [("gold (= proxy) reward", 2)] if proxy_is_gold(records) else [("gold reward", 2), ("proxy reward", 1)]
    fig, grid = plt.subplots(len(rows), len(envs), figsize=(5 * len(envs), 3.8 * len(rows)), squeeze=False,
                             sharex="col")
    fig.suptitle(f"Over-optimisation: {' and '.join(name for name, _ in rows)} vs KL "
                 f"(RL: means of {KL_BINS} KL bins of all iterations)")
    for col, env_id in enumerate(envs):
        reference_points, curves = [], []
        for label, by_env in sorted(grouped.items(), key=lambda item: _label_order(item[0])):
            traj = _trajectory(by_env.get(env_id, []), final_only=label.startswith(reference))
            if label.startswith(reference):
                reference_points.append(traj)
            elif len(traj):
                curves.append((traj, label, colors[label], "."))
        ref = np.concatenate(reference_points) if reference_points else np.empty((0, 3))
        if len(ref):
            curves.append((ref[np.argsort(ref[:, 0], kind="stable")], reference, "black", "s"))
        for row, (name, column) in enumerate(rows):
            ax = grid[row][col]
            for traj, label, color, marker in curves:
                ax.plot(traj[:, 0], traj[:, column], "-", marker=marker, color=color, label=label)
            ax.set(title=env_id if row == 0 else "", ylabel=name)
            ax.grid(alpha=0.3)
            if not ax.has_data():
                ax.text(0.5, 0.5, "no run logged KL", ha="center", va="center", transform=ax.transAxes)
        grid[-1][col].set_xlabel("KL(policy || reference)")
    return _finish(fig, list(grid.flat))


def performance_profiles(records: list[RunRecord], reps: int = 1000, seed: int = 0,
                         reference: str = "best-of-n") -> Figure:
    """Fraction of runs whose final gold reward exceeds tau, averaged over envs, with 95% bootstrap bands."""
    grouped = group_records(records)
    golds = [r.final.get(GOLD) for r in records if r.final.get(GOLD) is not None]
    fig, (ax,) = _axes(1, "Performance profiles (final gold reward)")
    if golds:
        taus = np.linspace(min(golds), max(golds), 101)
        colors = _colors(list(grouped), reference)
        for label, by_env in sorted(grouped.items(), key=lambda item: _label_order(item[0])):
            groups = [np.array([r.final[GOLD] for r in runs if r.final.get(GOLD) is not None]) for runs in by_env.values()]
            profile, low, high = performance_profile_band(groups, taus, reps=reps, seed=seed)
            if np.isfinite(profile).any():
                ax.plot(taus, profile, color=colors[label], label=label)
                ax.fill_between(taus, low, high, color=colors[label], alpha=0.15, linewidth=0)
    else:
        ax.text(0.5, 0.5, "no run logged gold reward", ha="center", va="center", transform=ax.transAxes)
    ax.set(xlabel="gold reward threshold tau", ylabel="fraction of runs with gold > tau", ylim=(-0.02, 1.02))
    ax.grid(alpha=0.3)
    return _finish(fig, [ax])


def rm_sweep(records: list[RunRecord], reference: str = "best-of-n", start: str = "best-of-n_1") -> Figure:
    """Per env: the best-of-n fit's peak gold reward and the KL at that peak against the amount of
    feedback (prompts labelled) each reward model was trained on (the ``feedback`` tag of the runs)."""
    envs = sorted({r.env_id for r in records})
    fig, axes = _axes(2, "Reward-model sweep: over-optimisation vs RM quality (prompts labelled for the RM)")
    by_rm: dict[tuple[str, float], list[RunRecord]] = {}
    for r in records:
        if "rm" in tags(r):
            by_rm.setdefault((str(tags(r)["rm"]), float(tags(r).get("feedback", math.nan))), []).append(r)
    colors = _colors(envs)
    for env_id in envs:
        points = []
        for (rm, feedback), runs in sorted(by_rm.items(), key=lambda item: item[0][1]):
            fits = [f for f in fit_records([r for r in runs if r.env_id == env_id], reference, start)
                    if f.fit is not None and f.label.startswith(reference)]
            measured = [r.final.get(GOLD) for r in runs if r.env_id == env_id and r.final.get(GOLD) is not None]
            if fits:
                fit = fits[0].fit  # an extrapolated peak (beyond the measured KL) is not drawn
                peak = (fit.peak_gold, fit.peak_kl) if fit.peak_measured else (math.nan, math.nan)
                points.append((feedback, *peak, max(measured)))
        if points:
            x, peak, peak_kl, best = (np.array(v, dtype=float) for v in zip(*points))
            axes[0].plot(x, peak, "-o", color=colors[env_id], label=f"{env_id} fitted peak")
            axes[0].plot(x, best, ":s", color=colors[env_id], label=f"{env_id} best measured")
            axes[1].plot(x, np.where(np.isfinite(peak_kl), peak_kl, np.nan), "-o", color=colors[env_id], label=f"{env_id} fitted peak")
    axes[0].set(xlabel="prompts labelled for the RM (k completions each, all pairs)", ylabel="gold reward at the peak", xscale="log")
    axes[1].set(xlabel="prompts labelled for the RM (k completions each, all pairs)", ylabel="KL at peak gold (no point: no peak in the data)", xscale="log")
    amounts = sorted({feedback for _, feedback in by_rm if math.isfinite(feedback)})
    for ax in axes:
        ax.grid(alpha=0.3)
        if amounts:  # label the amounts swept, not log-scale minor ticks (they overlap between 100 and 1000)
            ax.minorticks_off()
            ax.set_xticks(amounts, [f"{a:g}" for a in amounts])
        if not ax.has_data():
            ax.text(0.5, 0.5, "no RM-sweep records with a fit", ha="center", va="center", transform=ax.transAxes)
    return _finish(fig, axes)


def tuning_curves(records: list[RunRecord], chosen: dict[str, float], budgets: dict[str, int], reps: int = 1000,
                  seed: int = 0, window: int = SMOOTHING) -> Figure | None:
    """The tuning stage's evidence, one panel per tuned algorithm (labels ``<label>@lr*<factor>``): gold against
    samples for every learning-rate factor (mean over seeds, 95% CI band, the ``window`` moving average of
    ``learning_curves``), the ``chosen`` factor drawn thick, and a dashed line at the algorithm's board budget
    (``budgets``), where the factor was picked and where the curve's later rise says the board stops short.
    None when no tuning run logged a curve (DPO logs none)."""
    runs: dict[str, dict[float, list[RunRecord]]] = {}
    for r in records:
        label, _, factor = r.algo.partition("@lr*")
        if factor and sum(p.get(GOLD) is not None for p in r.curve) >= 2:
            runs.setdefault(label, {}).setdefault(float(factor), []).append(r)
    if not runs:
        return None
    factors = sorted({f for by_factor in runs.values() for f in by_factor})
    shades = plt.get_cmap("viridis")
    colors = {f: shades(0.1 + 0.75 * i / max(1, len(factors) - 1)) for i, f in enumerate(factors)}
    envs = sorted({r.env_id for r in records})
    fig, axes = _axes(len(runs), f"Tuning on {', '.join(envs)}: {GOLD} per learning-rate factor (mean of seeds, "
                                 f"95% CI, moving average over {window} logged points)")
    for ax, label in zip(axes, sorted(runs)):
        for factor, factor_runs in sorted(runs[label].items()):
            steps, values = _grid(factor_runs, GOLD)
            if len(steps) < 2:
                continue
            mean, low, high = _band(uniform_filter1d(values, size=window, axis=1, mode="nearest"), reps, seed)
            ax.plot(steps, mean, color=colors[factor], linewidth=2.5 if chosen.get(label) == factor else 1.0,
                    label=f"learning rate × {factor:g}")
            ax.fill_between(steps, low, high, color=colors[factor], alpha=0.15, linewidth=0)
        if label in budgets:
            ax.axvline(budgets[label], color="black", linestyle="--", linewidth=1, label="board budget")
        picked = f" (× {chosen[label]:g} chosen, thick)" if label in chosen else ""
        ax.set(title=f"{label}{picked}", xlabel="samples seen", ylabel=GOLD)
        ax.xaxis.set_major_formatter(THOUSANDS)
        ax.grid(alpha=0.3)
    return _finish(fig, axes)


def png(fig: Figure) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")  # "tight" keeps the outside legend
    plt.close(fig)
    return buffer.getvalue()


def track_figures(records: list[RunRecord], reference: str = "best-of-n", start: str = "best-of-n_1",
                  seed: int = 0) -> dict[str, Figure]:
    """The figures of one track's records, keyed by title: no learning curves when no run logged one
    (best-of-n alone trains nothing), no over-optimisation curve when there is neither a KL curve nor
    best-of-n's reference points (a from-scratch learner logs only its final KL)."""
    figures = {}
    if any(len(r.curve) >= 2 for r in records):
        figures["Learning curves"] = learning_curves(records, seed=seed, reference=reference)
    figures["Reward-KL frontier"] = reward_kl_frontier(records, seed=seed, reference=reference)
    kl_curves = any(sum(p.get(KL) is not None for p in r.curve) >= 2 for r in records)
    if kl_curves or any(r.algo.startswith(reference) for r in records):  # else one final point per env: no curve
        figures["Over-optimisation"] = overoptimisation(records, reference=reference)
    figures["Performance profiles"] = performance_profiles(records, seed=seed, reference=reference)
    if any("rm" in tags(r) for r in records):
        figures["RM sweep"] = rm_sweep(records, reference, start)
    return figures


def render_figures(records: list[RunRecord], reference: str = "best-of-n", start: str = "best-of-n_1",
                   seed: int = 0) -> dict[str, bytes]:
    """The leaderboard's figures as PNG bytes, keyed by title ("<track>: <figure>" when records have tracks)."""
    out = {}
    for track, track_records in sorted(split_tracks(records).items()):
        for title, fig in track_figures(track_records, reference, start, seed).items():
            out[f"{track}: {title}" if track else title] = png(fig)
    return out
