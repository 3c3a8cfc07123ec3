"""Leaderboard: results records -> per-track, per-env and overall tables, as Markdown and a static HTML page.

Why computed from records only: anyone holding the JSONL file can regenerate (and check) every
number on the page, and nothing from a live run leaks in. Records are split by track (verifier
reward vs a learned reward model, see ``benchmarks/PROTOCOL.md``); within a track each row pools
one algorithm setting's runs over seeds and preparations (``benchmarks.grouping``). Per env, a
cell aggregates those runs; "overall" aggregates across envs with a bootstrap stratified by env
(``benchmarks.stats``). Beside the means and IQMs the board reports the probability that a row's
run beats a run of the start policy (and each other row), and Gao et al.'s over-optimisation fits
(``benchmarks.overopt``). Columns rescored from stored rollouts (``benchmarks.rescore``) are added
when a rescores file sits beside the records.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agents.metrics import GOLD_REWARD, KL, REWARD
from benchmarks.grouping import Grouped, group_records, proxy_is_gold, split_tracks, tags
from benchmarks.overopt import KL_BINS, FitRow, fit_records
from benchmarks.plots import png, render_figures, tuning_curves
from benchmarks.records import RunRecord, git_commit, read_records, records_file
from benchmarks.rescore import rescore_columns, rescores_path
from benchmarks.stats import (
    NAN_ESTIMATE,
    Estimate,
    bootstrap,
    difference_of_means,
    iqm_over_groups,
    mean_over_groups,
    normalized_auc,
    probability_of_improvement,
)

# Column key -> (header, metric source, statistic). "auc" is the normalised area under the gold curve.
COLUMNS: dict[str, tuple[str, str, str]] = {
    "gold_mean": ("Gold reward, mean", GOLD_REWARD, "mean"),
    "gold_iqm": ("Gold reward, IQM", GOLD_REWARD, "iqm"),
    "proxy_mean": ("Proxy reward, mean", REWARD, "mean"),
    "proxy_iqm": ("Proxy reward, IQM", REWARD, "iqm"),
    "kl": ("Final KL, mean", KL, "mean"),
    "auc": ("Sample efficiency (gold AUC)", "auc", "mean"),
}
POI_START = "poi_start"
POI_HEADER = "P(gold > start)"
GAIN_START = "gain_start"
GAIN_HEADER = "Gold gain over start"
PROXY_COLUMNS = ("proxy_mean", "proxy_iqm")
TRACK_TITLES = {
    "verifier": "Verifier track",
    "learned-rm": "Learned-RM track",
    "rm-sweep": "RM sweep",
    "from-scratch": "From-scratch track",
}
TRACK_NOTES = {
    "verifier": "The reward optimised is the task's verifier (proxy = gold, so no proxy columns): does each "
                "optimiser improve the true objective over the SFT start?",
    "learned-rm": "The reward optimised (proxy) is a reward model learned from simulated preference feedback; gold is "
                  "the task's verifier: where does each optimiser peak, and when does it over-optimise the proxy?",
    "rm-sweep": "Best-of-n against reward models trained on more or less feedback (rows suffixed [feedbackN]: N "
                "prompts labelled); gold is the task's verifier.",
    "from-scratch": "Algorithms that cannot start from the SFT weights (their own small policy, trained from random "
                    "weights) on the verifier reward. Not comparable with the SFT-started rows of the other tracks.",
}


@dataclass
class Row:
    """One leaderboard line: an algorithm (setting) on one env, or across all its envs."""

    label: str
    runs: int
    envs: int
    cells: dict[str, Estimate]
    wall_s: float


@dataclass
class Leaderboard:
    """One track's tables: per-env and overall rows, pairwise probabilities of improvement, fits."""

    per_env: dict[str, list[Row]]
    overall: list[Row]
    records: list[RunRecord] = field(default_factory=list)
    reps: int = 2000
    columns: dict[str, tuple[str, str, str]] = field(default_factory=lambda: dict(COLUMNS))
    start: str | None = None  # the start-policy row the P(gold > start) column compares with
    reference: str | None = None  # the label prefix of the rows that train nothing (best-of-n)
    pairwise: dict[tuple[str, str], Estimate] = field(default_factory=dict)
    fits: list[FitRow] = field(default_factory=list)


def run_value(record: RunRecord, source: str) -> float:
    """The value a record contributes to a column (NaN when it did not log that metric)."""
    if source == "auc":
        points = [(p["step"], p.get(GOLD_REWARD)) for p in record.curve if p.get(GOLD_REWARD) is not None]
        # one point (best-of-n "trains" on a single batch) is no learning curve: no area to report
        return normalized_auc([s for s, _ in points], [v for _, v in points]) if len(points) > 1 else float("nan")
    value = record.final.get(source)
    return float("nan") if value is None else float(value)


Scores = tuple[list[np.ndarray], list[np.ndarray]]  # per env: run values, and each run's preparation id


def _scores(by_env: dict[str, list[RunRecord]], envs: list[str], source: str) -> Scores:
    """Per env, the finite values runs contribute to a column and the preparation each run came from
    (so the bootstrap resamples preparations, then runs)."""
    values, preps = [], []
    for env in envs:
        runs = by_env.get(env, [])
        v = np.array([run_value(r, source) for r in runs], dtype=float)
        p = np.array([str(tags(r).get("prep", "")) for r in runs])
        keep = np.isfinite(v)
        values.append(v[keep])
        preps.append(p[keep])
    return values, preps


def _row(label: str, by_env: dict[str, list[RunRecord]], columns: dict, start: dict[str, list[RunRecord]] | None,
         reps: int, seed: int) -> Row:
    cells = {}
    for key, (_, source, stat) in columns.items():
        groups, preps = _scores(by_env, list(by_env), source)
        cells[key] = bootstrap(groups, mean_over_groups if stat == "mean" else iqm_over_groups, reps=reps, seed=seed,
                               clusters=preps)
    if start is not None:
        cells[GAIN_START] = _comparison(difference_of_means, by_env, start, list(by_env), reps, seed)
        cells[POI_START] = _comparison(probability_of_improvement, by_env, start, list(by_env), reps, seed)
    runs = [r for recs in by_env.values() for r in recs]
    return Row(label, len(runs), len(by_env), cells, float(np.mean([r.wall_s for r in runs])))


def _comparison(estimator: Callable[..., Estimate], x: dict[str, list[RunRecord]], y: dict[str, list[RunRecord]],
                envs: list[str], reps: int, seed: int) -> Estimate:
    """``estimator`` (a two-sample statistic of ``benchmarks.stats``) of X's and Y's final gold over ``envs``."""
    (x_gold, x_preps), (y_gold, y_preps) = _scores(x, envs, GOLD_REWARD), _scores(y, envs, GOLD_REWARD)
    return estimator(x_gold, y_gold, reps=reps, seed=seed, x_clusters=x_preps, y_clusters=y_preps)


def _pairwise(grouped: Grouped, envs: list[str], reps: int, seed: int) -> dict[tuple[str, str], Estimate]:
    """P(X's gold > Y's gold) over the envs both ran, for every ordered pair of rows."""
    out = {}
    for x, x_envs in grouped.items():
        for y, y_envs in grouped.items():
            shared = [e for e in envs if e in x_envs and e in y_envs]
            if x != y and shared:
                out[(x, y)] = _comparison(probability_of_improvement, x_envs, y_envs, shared, reps, seed)
    return out


def build_leaderboard(records: list[RunRecord], reps: int = 2000, seed: int = 0, start: str = "best-of-n_1",
                      extra_columns: dict[str, tuple[str, str, str]] | None = None,
                      reference: str = "best-of-n") -> Leaderboard:
    """Aggregate one track's records into per-env rows (over seeds and preparations) and overall rows
    (over envs too), each sorted by mean final gold reward, best first. When a row is labelled
    ``start`` (best-of-1 is the SFT policy itself), every row also gets its gold gain over the start and
    P(its gold > start's gold). When every run's proxy is its gold (the verifier track) the proxy columns,
    copies of the gold ones, are left out."""
    columns = {**COLUMNS, **(extra_columns or {})}
    if proxy_is_gold(records):
        columns = {k: v for k, v in columns.items() if k not in PROXY_COLUMNS}
    grouped = group_records(records)
    start_runs = grouped.get(start)

    def best_first(row: Row) -> tuple[float, str]:
        gold = row.cells["gold_mean"].point
        return (-gold if math.isfinite(gold) else math.inf), row.label  # ties: alphabetical

    envs = sorted({r.env_id for r in records})
    per_env: dict[str, list[Row]] = {}
    for env_id in envs:
        rows = [_row(label, {env_id: by_env[env_id]}, columns, start_runs, reps, seed)
                for label, by_env in grouped.items() if env_id in by_env]
        per_env[env_id] = sorted(rows, key=best_first)
    overall = sorted((_row(label, by_env, columns, start_runs, reps, seed) for label, by_env in grouped.items()),
                     key=best_first)
    has_reference = start_runs is not None or any(label.startswith(reference) for label in grouped)
    fits = fit_records(records, reference, start) if has_reference else []  # no start policy: no gain to fit
    return Leaderboard(per_env, overall, records, reps, columns, start if start_runs else None, reference,
                       _pairwise(grouped, envs, reps, seed), fits)


def format_estimate(estimate: Estimate) -> str:
    if not math.isfinite(estimate.point):
        return "—"
    return f"{estimate.point:.3f} [{estimate.low:.3f}, {estimate.high:.3f}]"


def format_probability(estimate: Estimate) -> str:
    """``0.83*``: the star marks an interval that excludes 0.5 (a reliable difference)."""
    if not math.isfinite(estimate.point):
        return "—"
    reliable = estimate.low > 0.5 or estimate.high < 0.5
    return f"{estimate.point:.2f}{'*' if reliable else ''}"


def _main_table(board: Leaderboard, rows: list[Row], overall: bool) -> tuple[list[str], list[list[str]]]:
    keys = list(board.columns)
    header = ["Algorithm", "Envs" if overall else "Runs"] + (["Runs"] if overall else [])
    start_keys = [GAIN_START, POI_START] if board.start else []
    header += [board.columns[k][0] for k in keys] + ([GAIN_HEADER, POI_HEADER] if board.start else [])
    header += ["Wall time per run (s)"]
    body = []
    for row in rows:
        counts = [str(row.envs), str(row.runs)] if overall else [str(row.runs)]
        poi = [format_estimate(row.cells.get(k, NAN_ESTIMATE)) for k in start_keys]
        body.append([row.label, *counts, *(format_estimate(row.cells[k]) for k in keys), *poi, f"{row.wall_s:.1f}"])
    return header, body


def _pairwise_table(board: Leaderboard) -> tuple[list[str], list[list[str]]]:
    labels = [row.label for row in board.overall]
    header = ["P(row > column)"] + labels
    body = [[x] + ["" if x == y else format_probability(board.pairwise.get((x, y), NAN_ESTIMATE)) for y in labels]
            for x in labels]
    return header, body


def _fits_table(board: Leaderboard) -> tuple[list[str], list[list[str]]]:
    header = ["Env", "Optimiser", "Form", "alpha", "beta", "R² (bin means)", "Fitted peak: KL", "Fitted peak: gold",
              "Measured peak: KL", "Measured peak: gold", "Points (bins)", "Note"]
    body = []
    for row in board.fits:
        if row.fit is None:
            body.append([row.env_id, row.label] + ["—"] * 9 + [f"not fitted: {row.reason}"])
            continue
        f = row.fit
        notes = ["gold falls from the start (alpha < 0)"] if f.alpha < 0 else []
        if math.isinf(f.peak_kl):
            peak_kl, peak_gold = "no peak (beta ≤ 0)", "—"
        elif f.peak_kl < f.min_kl:
            peak_kl, peak_gold = f"at the start (< {f.min_kl:.3g})", "—"
        elif not f.peak_measured:
            peak_kl, peak_gold = f"beyond the measured KL (> {f.max_kl:.3g})", "—"
            notes.append(f"the fitted curve peaks at KL {f.peak_kl:.3g}, outside the data")
        else:
            peak_kl, peak_gold = f"{f.peak_kl:.3g}", f"{f.peak_gold:.3f}"
        r2 = "—" if math.isnan(f.r2) else f"{f.r2:.2f}"
        body.append([row.env_id, row.label, "d(α − βd)" if f.form == "bon" else "d(α − β log d)",
                     f"{f.alpha:.3f}", f"{f.beta:.3f}", r2, peak_kl, peak_gold, f"{f.measured_peak_kl:.3g}",
                     f"{f.measured_peak_gold:.3f}", f"{f.points} ({f.bins})", "; ".join(notes)])
    return header, body


def _provenance(records: list[RunRecord]) -> list[str]:
    commits = sorted({r.git_commit for r in records})
    dirty = [c for c in commits if c.endswith("-dirty") or c == "unknown"]
    hardware = sorted({f"{r.hardware.get('cpu')} ({r.hardware.get('usable_cores')} usable cores)"
                       + (f", GPU {r.hardware['gpu']}" if r.hardware.get("gpu") else "") for r in records})
    versions = sorted({", ".join(f"{k} {v}" for k, v in r.versions.items()) for r in records})
    warning = ([f"WARNING: {len(commits)} commits, {len(dirty)} with uncommitted changes: these records are not "
                "from one reproducible commit"] if len(commits) > 1 or dirty else [])
    return warning + [f"git commit(s): {', '.join(commits)}", f"hardware: {'; '.join(hardware)}",
                      f"versions: {'; '.join(versions)}",
                      f"summed wall time of the recorded runs (one thread each): {sum(r.wall_s for r in records) / 3600:.2f} h "
                      f"over {len(records)} runs; model preparation not included"]


PROGRESS_FILE = "progress.json"  # the suite's record of its stages, beside the records
TUNING_DIR = "tuning"  # the suite's tuning records and rollouts, beside the board's
SUITE_CONFIG_FILE = "suite_config.yaml"  # the suite's setup of the board, beside the records
TUNING_TITLE = "Tuning and budget evidence"
TUNING_NOTE = ("The tuning stage's runs on its own env (not on the board), at twice the board budget: each tuned "
               "algorithm's gold for every learning-rate factor tried. The factor with the highest gold over the last "
               "quarter before the board budget (dashed) was chosen (thick line) and runs on the board; how much "
               "gold the chosen curve still gains after the dashed line is the budget check above. DPO logs no gold "
               "curve (it samples nothing while training) and was picked by its final gold, so it has no panel.")
CONVERGED_SHARE = 0.9  # the protocol's rule: an algorithm has converged when it reached 90% of its gain at twice the budget


def progress_notes(progress: dict[str, Any]) -> list[str]:
    """Lines about how the suite that wrote these records ran (its ``progress.json``): whether the board budget
    converged by the protocol's rule, as a WARNING when it did not, and the wall time of each stage."""
    lines = []
    evidence = {label: e for label, e in progress.get("budget_evidence", {}).items() if e.get("gain_reached") is not None}
    if evidence:
        budget = next(iter(evidence.values()))["board_budget"]
        tuning = next(iter(evidence.values()))["tuning_budget"]
        shares = ", ".join(f"{label} {e['gain_reached']:.0%}" for label, e in evidence.items())
        short = sorted(label for label, e in evidence.items() if e["gain_reached"] < CONVERGED_SHARE)
        check = (f"budget check on the tuning env: share of the gold gain made by {tuning} samples that each "
                 f"algorithm had reached at the board's {budget}: {shares}")
        lines.append(f"WARNING: not converged by the protocol's rule (below {CONVERGED_SHARE:.0%}: {', '.join(short)}); "
                     f"these are fixed-budget results at {budget} samples per RL run. {check}" if short else check)
    stages = progress.get("stages", {})
    if stages:
        groups: dict[str, float] = {}
        for stage, entry in stages.items():
            key = stage.split("/")[0] if stage.startswith("prepare/") else stage
            groups[key] = groups.get(key, 0.0) + float(entry.get("wall_s", 0.0))
        lines.append("wall time per suite stage (2 workers): " + ", ".join(
            f"{stage} {seconds / 60:.0f} min" for stage, seconds in groups.items())
            + f"; {sum(groups.values()) / 3600:.1f} h in all")
    return lines


METHOD_NOTE = (
    "How to read this page. Each row is one algorithm setting; a cell is a point estimate with a 95% stratified "
    "percentile-bootstrap confidence interval ({reps} resamples) over its runs — every seed of every independent "
    "SFT + reward-model preparation — resampled within each env, preparations first, then seeds within them. Mean = mean over envs of the mean over runs; "
    "IQM = interquartile mean of all runs (with fewer than 4 runs it equals the mean). Gold reward is the task's "
    "verifier on held-out prompts; proxy reward is what the algorithm optimised. Final numbers come from the "
    "runner's evaluation of each final policy (evaluation seed = base seed + run seed, the same for every algorithm "
    "at one seed). {poi}Sample efficiency = average gold reward during training (area under the curve over its "
    "step range; — when a run logged no curve of two points or more). Wall time covers training and the final "
    "evaluation."
)
POI_NOTE = ("Gold gain over start = the row's mean gold minus the start policy's ({start}), per env, averaged "
            "over envs, with the same bootstrap (the row's and the start's runs resampled independently); the "
            "interval excluding 0 means a reliable gain (or loss). "
            "P(gold > start) = probability that a run of the row beats a run of the start policy ({start}) on "
            "gold reward, averaged over envs (0.5 = no difference; Agarwal et al. 2021); the interval excluding "
            "0.5 means a reliable difference. ")
PAIRWISE_NOTE = ("Probability that a run of the row algorithm has a higher final gold reward than a run of the column "
                 "algorithm (averaged over the envs both ran); * = the 95% bootstrap interval excludes 0.5.")
FITS_NOTE = ("Gao et al. (2023) over-optimisation fits of gold reward gained over the start policy against "
             "d = sqrt(KL), made to mean gold per KL: best-of-n from the final policies of every n (one point per n), "
             "RL algorithms from the iterations of all their runs (the policy along training, scored on its "
             f"on-policy training batch), pooled into {KL_BINS} equal-count KL bins. Fitted peak = where the fitted curve "
             "turns down ('at the start': before the smallest measured KL; an extrapolation beyond the largest is "
             "not reported as a peak); measured "
             "peak = the KL bin (or n) with the highest mean gold; 'no peak' = the fit never turns down.")


Section = tuple[str, str, str, tuple[list[str], list[list[str]]]]  # title, note, kind, (header, body)
HEADLINE_TITLE = "Headline: both tracks"
HEADLINE_NOTE = ("Each row's overall cells from the two tracks' tables below, side by side: with the verifier as "
                 "the reward, and against a learned reward model (gold is the verifier on both). The gain and P(gold "
                 "> start) compare with the start policy's row ({start}).")


def headline(boards: dict[str, Leaderboard]) -> Section | None:
    """The two tracks' overall gold, the verifier track's gain and P(gold > start), and the learned-RM track's
    final KL, one row per algorithm in the verifier track's order; None unless the page has both tracks."""
    if not {"verifier", "learned-rm"} <= set(boards):
        return None
    verifier, learned = boards["verifier"], {row.label: row for row in boards["learned-rm"].overall}
    header = ["Algorithm", "Verifier track: gold", GAIN_HEADER, POI_HEADER, "Learned-RM track: gold", "Its final KL"]
    body = []
    for row in verifier.overall:
        other = learned.get(row.label)
        verifier_cells = (format_estimate(row.cells.get(k, NAN_ESTIMATE)) for k in ("gold_mean", GAIN_START, POI_START))
        body.append([row.label, *verifier_cells, format_estimate(other.cells["gold_mean"]) if other else "—",
                     f"{other.cells['kl'].point:.2f}" if other else "—"])
    return HEADLINE_TITLE, HEADLINE_NOTE.format(start=verifier.start), "board", (header, body)


def _markdown_table(header: list[str], body: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(c) + " |" for c in body]


def findings(board: Leaderboard) -> list[str]:
    """The track's tables read against the protocol's claims, in words, so a failed claim is stated on the
    board and not left to be found in a table: which rows gain gold over the start (the gain's 95% CI above
    0) overall, which do not, the envs where a row's gain is not above 0, and the best group among the rows
    that train (the best of them by mean gold, and every row it does not reliably beat); with a learned
    proxy, where each optimiser's gold peaked along KL."""
    trained = [r for r in board.overall if not (board.reference and r.label.startswith(board.reference))]
    if not board.start or not trained:
        return []
    trained_labels = {r.label for r in trained}

    def gain(row: Row) -> Estimate:
        return row.cells.get(GAIN_START, NAN_ESTIMATE)

    above = [r.label for r in trained if gain(r).low > 0]
    below = [f"{r.label} {format_estimate(gain(r))}" for r in trained
             if math.isfinite(gain(r).point) and gain(r).low <= 0]
    lines = [f"Gold gain over the start ({board.start}) with its 95% CI above 0, over all envs: "
             f"{', '.join(above) or 'none'}; not above 0: {'; '.join(below) or 'none'}."]
    for env, rows in board.per_env.items():
        failed = [f"{r.label} {format_estimate(gain(r))}" for r in rows
                  if r.label in trained_labels and math.isfinite(gain(r).point) and gain(r).low <= 0]
        if failed and len(board.per_env) > 1:
            lines.append(f"On {env} the gain's CI is not above 0 for: {'; '.join(failed)}.")
    if PROXY_COLUMNS[0] in board.columns:  # a learned proxy: say where gold peaked before the proxy took over
        for env in board.per_env:
            fits = [(f.label, f.fit) for f in board.fits if f.env_id == env and f.fit is not None]
            peaks = [f"{label} at KL {fit.measured_peak_kl:.2g} ({fit.measured_peak_gold:.3f}"
                     f"{', its first KL bin: gold fell from there on' if 0 < fit.measured_peak_kl == fit.min_kl else ''})"
                     for label, fit in fits]
            if peaks:
                lines.append(f"Where gold peaked on {env} (the KL bin, or n, with the highest mean gold): "
                             f"{'; '.join(peaks)}.")
    if len(trained) > 1:
        top = trained[0]
        group = [top.label] + [r.label for r in trained[1:]
                               if board.pairwise.get((top.label, r.label), NAN_ESTIMATE).low <= 0.5]
        if len(group) == 1:
            lines.append(f"Best group among the rows that train: {top.label} alone (it has the highest mean gold, and "
                         f"every P({top.label} > row) interval is above 0.5).")
        else:
            lines.append(f"Best group among the rows that train: {', '.join(group)} ({top.label} has the highest mean "
                         f"gold; for each other row of the group, the P({top.label} > row) interval includes 0.5).")
    return lines


def _sections(board: Leaderboard, prefix: str) -> list[Section]:
    """(title, note, kind, table) in page order for one track; ``kind`` "board" marks ranked tables."""
    sections = [(f"{prefix}Overall", "", "board", _main_table(board, board.overall, True))]
    sections += [(f"{prefix}{env}", "", "board", _main_table(board, rows, False)) for env, rows in board.per_env.items()]
    if len(board.overall) > 1:
        sections.append((f"{prefix}Probability of improvement between algorithms", PAIRWISE_NOTE, "matrix",
                         _pairwise_table(board)))
    if board.fits:
        sections.append((f"{prefix}Over-optimisation fits", FITS_NOTE, "fits", _fits_table(board)))
    return sections


def _tracks(boards: Leaderboard | dict[str, Leaderboard]) -> dict[str, Leaderboard]:
    return boards if isinstance(boards, dict) else {"": boards}


def _note(boards: dict[str, Leaderboard]) -> str:
    first = next(iter(boards.values()))
    starts = sorted({b.start for b in boards.values() if b.start})
    return METHOD_NOTE.format(reps=first.reps, poi=POI_NOTE.format(start=", ".join(starts)) if starts else "")


@dataclass
class _TrackPage:
    """One track's part of the page: its heading and note (none for records without tracks), its
    tables and the keys of its figures (``render_figures`` prefixes them with ``"<track>: "``)."""

    heading: str
    note: str
    findings: list[str]
    prefix: str
    sections: list[Section]
    figures: list[tuple[str, str]]  # (figure key, displayed title)


def _layout(boards: dict[str, Leaderboard], figure_keys: list[str]) -> list[_TrackPage]:
    pages = []
    for track, board in boards.items():
        name = TRACK_TITLES.get(track, track)
        prefix = f"{name}: " if track else ""
        figures = [(k, prefix + k.split(": ", 1)[1]) for k in figure_keys if track and k.startswith(f"{track}: ")]
        figures += [(k, k) for k in figure_keys if not track and ": " not in k and k != TUNING_TITLE]
        pages.append(_TrackPage(name if track else "", TRACK_NOTES.get(track, ""), findings(board), prefix,
                                _sections(board, prefix), figures))
    return pages


def to_markdown(boards: Leaderboard | dict[str, Leaderboard], figure_files: dict[str, str] | None = None,
                notes: Sequence[str] = ()) -> str:
    """The page as GitHub Markdown: per track its note, one section per table, then its figures
    (``figure_files``: figure key -> relative path); ``notes`` are added to the provenance list."""
    boards = _tracks(boards)
    all_records = [r for b in boards.values() for r in b.records]
    provenance = _provenance(all_records) + list(notes)
    lines = ["# llm_gym leaderboard", "", _note(boards), ""] + [f"- {p}" for p in provenance] + [""]
    top = headline(boards)
    if top:
        title, note, _, (header, body) = top
        lines += [f"## {title}", "", note, ""] + _markdown_table(header, body) + [""]
    if TUNING_TITLE in (figure_files or {}):
        lines += [f"## {TUNING_TITLE}", "", TUNING_NOTE, "", f"![{TUNING_TITLE}]({figure_files[TUNING_TITLE]})", ""]
    for page in _layout(boards, list(figure_files or {})):
        if page.heading:
            lines += [f"## {page.heading}", ""] + ([page.note, ""] if page.note else [])
        lines += [f"- {line}" for line in page.findings] + ([""] if page.findings else [])
        for title, note, _, (header, body) in page.sections:
            lines += [f"## {title}", ""] + ([note, ""] if note else []) + _markdown_table(header, body) + [""]
        for key, title in page.figures:
            lines += [f"## {title}", "", f"![{title}]({figure_files[key]})", ""]
    return "\n".join(lines)


HTML_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 2em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
div.scroll { overflow-x: auto; }
td { white-space: nowrap; } table.board td { white-space: normal; min-width: 5.5em; } table.board td:first-child { white-space: nowrap; }
table.fits td { white-space: normal; } table.fits td:first-child, table.fits td:nth-child(3) { white-space: nowrap; }
span.ci { white-space: nowrap; color: #666; font-size: 0.85em; }
th { background: #f0f0f0; } td:first-child, th:first-child { text-align: left; font-weight: 600; white-space: nowrap; }
table.board tbody tr:first-child td { background: #eef7ee; }
p.note, ul.prov { max-width: 70em; font-size: 0.85em; color: #555; }
li.warn { color: #a00; font-weight: 600; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
h1 + p.note { font-size: 0.9em; color: #333; }
h2.track { margin-top: 2.5em; padding-top: 0.5em; border-top: 3px solid #446; font-size: 1.7em; }
p.track { max-width: 70em; font-size: 1em; }
ul.findings { max-width: 70em; font-size: 0.95em; }
"""


def _html_cell(text: str) -> str:
    """A cell's text, with an estimate's interval in a smaller span that wraps below its point as a unit."""
    point, sep, interval = text.partition(" [")
    if sep and interval.endswith("]"):
        return f'{html.escape(point)} <span class="ci">[{html.escape(interval)}</span>'
    return html.escape(text)


def _html_section(section: Section, anchor: str) -> list[str]:
    title, note, kind, (header, body) = section
    esc = html.escape
    return [f'<h2 id="{anchor}">{esc(title)}</h2>' + (f'<p class="note">{esc(note)}</p>' if note else ""),
            f'<div class="scroll"><table class="{kind}"><thead><tr>',
            "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr></thead><tbody>",
            *("<tr>" + "".join(f"<td>{_html_cell(c)}</td>" for c in cells) + "</tr>" for cells in body),
            "</tbody></table></div>"]


def _html_figure(title: str, data: bytes, anchor: str, note: str = "") -> str:
    esc = html.escape
    return (f'<h2 id="{anchor}">{esc(title)}</h2>' + (f'<p class="note">{esc(note)}</p>' if note else "")
            + f'<img alt="{esc(title)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">')


def to_html(boards: Leaderboard | dict[str, Leaderboard], figures: dict[str, bytes] | None = None,
            notes: Sequence[str] = ()) -> str:
    """A single self-contained page: tables plus the plots embedded as base64 PNGs (no external files)."""
    boards = _tracks(boards)
    esc = html.escape
    all_records = [r for b in boards.values() for r in b.records]
    prov = "".join(f'<li{" class=warn" if p.startswith("WARNING") else ""}>{esc(p)}</li>'
                   for p in _provenance(all_records) + list(notes))
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>llm_gym leaderboard</title>',
        f"<style>{HTML_STYLE}</style></head><body>",
        "<h1>llm_gym leaderboard</h1>",
        f'<p class="note">{esc(_note(boards))}</p>',
        f'<ul class="prov">{prov}</ul>',
    ]
    pages = _layout(boards, list(figures or {}))
    top = headline(boards)
    anchors: dict[str, str] = {HEADLINE_TITLE: "headline"} if top else {}
    if TUNING_TITLE in (figures or {}):
        anchors[TUNING_TITLE] = "tuning"
    for page in pages:
        for title in [t for t, *_ in page.sections] + [t for _, t in page.figures]:
            anchors[title] = f"s{len(anchors)}"
    contents = []
    for page in pages:
        links = [f'<a href="#{anchors[t]}">{esc(t[len(page.prefix):])}</a>'
                 for t in [t for t, *_ in page.sections] + [t for _, t in page.figures]]
        contents.append((f"<b>{esc(page.heading)}</b>: " if page.heading else "") + " · ".join(links))
    contents[:0] = [f'<a href="#{anchors[t]}">{esc(t)}</a>' for t in (HEADLINE_TITLE, TUNING_TITLE) if t in anchors]
    parts.append('<nav><p class="note">Contents<br>' + "<br>".join(contents) + "</p></nav>")
    if top:
        parts += _html_section(top, anchors[HEADLINE_TITLE])
    if TUNING_TITLE in anchors:
        parts.append(_html_figure(TUNING_TITLE, figures[TUNING_TITLE], anchors[TUNING_TITLE], TUNING_NOTE))
    for page in pages:
        if page.heading:
            parts.append(f'<h2 class="track">{esc(page.heading)}</h2><p class="track">{esc(page.note)}</p>')
        if page.findings:
            parts.append('<ul class="findings">' + "".join(f"<li>{esc(line)}</li>" for line in page.findings) + "</ul>")
        for section in page.sections:
            parts += _html_section(section, anchors[section[0]])
        for key, title in page.figures:
            parts.append(_html_figure(title, figures[key], anchors[title]))
    parts.append("</body></html>")
    return "\n".join(parts)


def build_tracks(records: list[RunRecord], reps: int = 2000, seed: int = 0, start: str = "best-of-n_1",
                 extra_columns: dict[str, tuple[str, str, str]] | None = None,
                 reference: str = "best-of-n") -> dict[str, Leaderboard]:
    """One ``Leaderboard`` per track, in the protocol's order (verifier, learned RM, RM sweep, others)."""
    order = list(TRACK_TITLES)
    split = split_tracks(records)
    tracks = sorted(split, key=lambda t: (order.index(t) if t in order else len(order), t))
    return {t: build_leaderboard(split[t], reps, seed, start, extra_columns, reference) for t in tracks}


def write_leaderboard(
    records_path: str | Path, out_dir: str | Path, reps: int = 2000, seed: int = 0, reference: str = "best-of-n",
    start: str = "best-of-n_1", rescores: str | Path | None = None,
) -> dict[str, Path]:
    """Read records (and rescored columns), write ``leaderboard.md``, ``index.html`` (self-contained) and the plots."""
    records = read_records(records_path)
    if not records:
        raise ValueError(f"no results records in {records_path}: run `llm-gym bench run` first")
    names, records = rescore_columns(records, rescores or rescores_path(records_path))
    extra = {f"rescore_{n}": (f"Rescored: {n}, mean", f"rescore/{n}", "mean") for n in names}
    boards = build_tracks(records, reps=reps, seed=seed, start=start, extra_columns=extra, reference=reference)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = render_figures(records, reference=reference, start=start, seed=seed)
    progress_path = Path(records_path).with_name(PROGRESS_FILE)
    progress = json.loads(progress_path.read_text()) if progress_path.is_file() else {}
    tuning_records = records_file(Path(records_path).with_name(TUNING_DIR))
    if tuning_records.is_file():
        budgets = {label: e["board_budget"] for label, e in progress.get("budget_evidence", {}).items()}
        fig = tuning_curves(read_records(tuning_records), progress.get("tuned_lr_factors", {}), budgets, seed=seed)
        if fig is not None:
            figures[TUNING_TITLE] = png(fig)
    paths = {"markdown": out_dir / "leaderboard.md", "html": out_dir / "index.html"}
    for name, image in figures.items():
        slug = "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")
        paths[name] = out_dir / f"{slug}.png"
        paths[name].write_bytes(image)
    notes = progress_notes(progress)
    notes.append(f"tables and figures rendered from these records by the code at commit {git_commit()}")
    paths["markdown"].write_text(to_markdown(boards, {name: paths[name].name for name in figures}, notes))
    paths["html"].write_text(to_html(boards, figures, notes))
    return paths
