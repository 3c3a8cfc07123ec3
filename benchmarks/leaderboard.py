"""Leaderboard: results records -> per-env and overall tables, as Markdown and a static HTML page.

Why computed from records only: anyone holding the JSONL file can regenerate (and check) every
number on the page, and nothing from a live run leaks in. Per env, each row aggregates one
algorithm's seeds; "overall" aggregates an algorithm's runs across envs with a bootstrap
stratified by env (``benchmarks.stats``). Rows are distinguished by their config: if one label was
run with several settings (say, records from an older budget are still in the file), each
setting gets its own row, suffixed with a short hash of the non-env part of the config.
"""

from __future__ import annotations

import base64
import html
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks.plots import render_figures
from benchmarks.records import RunRecord, read_records
from benchmarks.stats import Estimate, bootstrap, iqm_over_groups, mean_over_groups, normalized_auc
from benchmarks.variants import row_label, variant_hash

GOLD, PROXY, KL = "objective/gold_reward", "objective/reward", "objective/kl"
# Column key -> (header, metric source, statistic). "auc" is the normalised area under the gold curve.
COLUMNS: dict[str, tuple[str, str, str]] = {
    "gold_mean": ("Gold reward, mean", GOLD, "mean"),
    "gold_iqm": ("Gold reward, IQM", GOLD, "iqm"),
    "proxy_mean": ("Proxy reward, mean", PROXY, "mean"),
    "proxy_iqm": ("Proxy reward, IQM", PROXY, "iqm"),
    "kl": ("Final KL, mean", KL, "mean"),
    "auc": ("Sample efficiency (gold AUC)", "auc", "mean"),
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
    per_env: dict[str, list[Row]]
    overall: list[Row]
    records: list[RunRecord] = field(default_factory=list)
    reps: int = 2000


def run_value(record: RunRecord, source: str) -> float:
    """The value a record contributes to a column (NaN when it did not log that metric)."""
    if source == "auc":
        points = [(p["step"], p.get(GOLD)) for p in record.curve if p.get(GOLD) is not None]
        return normalized_auc([s for s, _ in points], [v for _, v in points]) if points else float("nan")
    value = record.final.get(source)
    return float("nan") if value is None else float(value)


def _row(label: str, by_env: dict[str, list[RunRecord]], reps: int, seed: int) -> Row:
    cells = {}
    for key, (_, source, stat) in COLUMNS.items():
        groups = [np.array([run_value(r, source) for r in recs]) for recs in by_env.values()]
        groups = [g[np.isfinite(g)] for g in groups]
        cells[key] = bootstrap(groups, mean_over_groups if stat == "mean" else iqm_over_groups, reps=reps, seed=seed)
    runs = [r for recs in by_env.values() for r in recs]
    return Row(label, len(runs), len(by_env), cells, float(np.mean([r.wall_s for r in runs])))


def build_leaderboard(records: list[RunRecord], reps: int = 2000, seed: int = 0) -> Leaderboard:
    """Aggregate records into per-env rows (over seeds) and overall rows (over envs and seeds),
    each sorted by mean final gold reward, best first."""
    variants: dict[str, set[str]] = defaultdict(set)
    for record in records:
        variants[record.algo].add(variant_hash(record))
    multi = {algo for algo, hashes in variants.items() if len(hashes) > 1}
    grouped: dict[str, dict[str, list[RunRecord]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        grouped[row_label(record, multi)][record.env_id].append(record)

    def best_first(row: Row) -> tuple[float, str]:
        gold = row.cells["gold_mean"].point
        return (-gold if math.isfinite(gold) else math.inf), row.label  # ties: alphabetical

    per_env: dict[str, list[Row]] = {}
    for env_id in sorted({r.env_id for r in records}):
        rows = [_row(label, {env_id: envs[env_id]}, reps, seed) for label, envs in grouped.items() if env_id in envs]
        per_env[env_id] = sorted(rows, key=best_first)
    overall = sorted((_row(label, envs, reps, seed) for label, envs in grouped.items()), key=best_first)
    return Leaderboard(per_env, overall, records, reps)


def format_estimate(estimate: Estimate) -> str:
    if not math.isfinite(estimate.point):
        return "—"
    return f"{estimate.point:.3f} [{estimate.low:.3f}, {estimate.high:.3f}]"


def _table_rows(rows: list[Row], overall: bool) -> tuple[list[str], list[list[str]]]:
    header = ["Algorithm", "Envs" if overall else "Seeds"] + ([] if not overall else ["Runs"])
    header += [COLUMNS[k][0] for k in COLUMNS] + ["Wall time per run (s)"]
    body = []
    for row in rows:
        counts = [str(row.envs), str(row.runs)] if overall else [str(row.runs)]
        body.append([row.label, *counts, *(format_estimate(row.cells[k]) for k in COLUMNS), f"{row.wall_s:.1f}"])
    return header, body


def _provenance(records: list[RunRecord]) -> list[str]:
    commits = sorted({r.git_commit for r in records})
    hardware = sorted({f"{r.hardware.get('cpu')} ({r.hardware.get('usable_cores')} usable cores)"
                       + (f", GPU {r.hardware['gpu']}" if r.hardware.get("gpu") else "") for r in records})
    versions = sorted({", ".join(f"{k} {v}" for k, v in r.versions.items()) for r in records})
    return [f"git commit(s): {', '.join(commits)}", f"hardware: {'; '.join(hardware)}", f"versions: {'; '.join(versions)}"]


METHOD_NOTE = (
    "Each cell is a point estimate with a 95% stratified percentile-bootstrap confidence interval over seeds "
    "({reps} resamples; overall rows resample seeds within each env). Mean = mean over envs of the mean over "
    "seeds; IQM = interquartile mean of all runs (with fewer than 4 runs it equals the mean). Final numbers come "
    "from the runner's evaluation of each final policy on the same held-out episodes. Sample efficiency = area "
    "under the gold-reward learning curve divided by its step range (the average gold reward during training; "
    "— when a run logged no curve). Wall time covers training and the final evaluation."
)


def to_markdown(board: Leaderboard, figure_files: dict[str, str] | None = None) -> str:
    """The tables as GitHub Markdown; ``figure_files`` (title -> relative path) are linked at the end."""
    lines = ["# llm_gym leaderboard", "", METHOD_NOTE.format(reps=board.reps), ""]
    lines += [f"- {p}" for p in _provenance(board.records)] + [""]
    sections = [("Overall", board.overall, True)] + [(env, rows, False) for env, rows in board.per_env.items()]
    for title, rows, overall in sections:
        header, body = _table_rows(rows, overall)
        lines += [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(cells) + " |" for cells in body] + [""]
    for title, path in (figure_files or {}).items():
        lines += [f"## {title}", "", f"![{title}]({path})", ""]
    return "\n".join(lines)


HTML_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 2em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
td { white-space: nowrap; }
th { background: #f0f0f0; } td:first-child, th:first-child { text-align: left; font-weight: 600; }
tr:first-child td { background: #eef7ee; }
p.note, ul.prov { max-width: 70em; font-size: 0.85em; color: #555; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
"""


def to_html(board: Leaderboard, figures: dict[str, bytes] | None = None) -> str:
    """A single self-contained page: tables plus the plots embedded as base64 PNGs (no external files)."""
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>llm_gym leaderboard</title>',
        f"<style>{HTML_STYLE}</style></head><body>",
        "<h1>llm_gym leaderboard</h1>",
        f'<p class="note">{esc(METHOD_NOTE.format(reps=board.reps))}</p>',
        '<ul class="prov">' + "".join(f"<li>{esc(p)}</li>" for p in _provenance(board.records)) + "</ul>",
    ]
    sections = [("Overall", board.overall, True)] + [(env, rows, False) for env, rows in board.per_env.items()]
    for title, rows, overall in sections:
        header, body = _table_rows(rows, overall)
        parts.append(f"<h2>{esc(title)}</h2><table><thead><tr>")
        parts.append("".join(f"<th>{esc(h)}</th>" for h in header) + "</tr></thead><tbody>")
        parts += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>" for cells in body]
        parts.append("</tbody></table>")
    for title, png in (figures or {}).items():
        data = base64.b64encode(png).decode()
        parts.append(f'<h2>{esc(title)}</h2><img alt="{esc(title)}" src="data:image/png;base64,{data}">')
    parts.append("</body></html>")
    return "\n".join(parts)


def write_leaderboard(
    records_path: str | Path, out_dir: str | Path, reps: int = 2000, seed: int = 0, reference: str = "best-of-n"
) -> dict[str, Path]:
    """Read records, write ``leaderboard.md``, ``index.html`` (self-contained) and the plots as PNGs."""
    records = read_records(records_path)
    if not records:
        raise ValueError(f"no results records in {records_path}: run `llm-gym bench run` first")
    board = build_leaderboard(records, reps=reps, seed=seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = render_figures(records, reference=reference, seed=seed)
    paths = {"markdown": out_dir / "leaderboard.md", "html": out_dir / "index.html"}
    for name, png in figures.items():
        paths[name] = out_dir / f"{name.lower().replace(' ', '_').replace('-', '_')}.png"
        paths[name].write_bytes(png)
    paths["markdown"].write_text(to_markdown(board, {name: paths[name].name for name in figures}))
    paths["html"].write_text(to_html(board, figures))
    return paths
