"""``llm-gym bench rescore``: score stored evaluation rollouts with another reward, as a new leaderboard column.

Why: comparing a new reward model (or reward spec) on runs that already exist should cost the
scoring of their completions, not a new grid. Every benchmark run stores the completions its
final score came from (``benchmarks.rollouts``); this command scores them in batches with any
``llm_gym.make_reward`` spec (``{env}`` in the spec becomes the env's short name, and specs that
need a task get the env's built-in task) and appends one line per run to ``rescores.jsonl``
beside the records: ``{column, reward, algo, env_id, seed, config_hash, value, episodes}``. The
leaderboard turns each column into a "Rescored: <column>" table column with bootstrap intervals,
like the proxy and gold rewards. Append-only and resumable: runs already scored for a column are
skipped, and reusing a column name with a different spec is an error.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.records import RunRecord, append_json_line, config_hash, read_records, records_file
from benchmarks.rollouts import default_rollouts_root, read_rollouts, record_rollouts
from benchmarks.grouping import env_name

RESCORES_FILE = "rescores.jsonl"


@dataclass
class RescoreConfig:
    """What to rescore, with which reward, under which column name."""

    reward: str = field(metadata={"help": "reward spec for llm_gym.make_reward, e.g. 'learned:path=runs/rm-v2-{env}' "
                                          "or 'verifier'; {env} becomes each env's short name"})
    column: str = field(metadata={"help": "name of the new leaderboard column (letters, digits, - and _)"})
    records: str = field(default="benchmarks/results/leaderboard",
                         metadata={"help": "results records whose runs are rescored: a records file (JSONL, or a "
                                           "sealed board's .jsonl.gz) or a board directory holding one"})
    rollouts_dir: str | None = field(default=None, metadata={"help": "stored rollouts (default: rollouts/ beside the records)"})
    rescores_file: str | None = field(default=None, metadata={"help": f"JSONL to append the scores to (default: "
                                                                         f"{RESCORES_FILE} beside the records)"})
    batch_size: int = field(default=256, metadata={"help": "completions scored per reward call"})
    env_ids: list[str] | None = field(default=None, metadata={"help": "only rescore runs on these env ids (default: all)"})


@dataclass
class RescoreSummary:
    """Runs scored now, runs already scored for this column, runs without stored rollouts."""

    scored: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0
    missing: list[str] = field(default_factory=list)


def rescores_path(records_path: str | Path) -> Path:
    return Path(records_path).parent / RESCORES_FILE


def read_rescores(path: str | Path) -> list[dict[str, Any]]:
    """Every rescore line in ``path`` (none if it does not exist)."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def rescore_key(record: RunRecord) -> tuple[str, str, int, str]:
    return record.algo, record.env_id, int(record.seed), config_hash(record.config)


def score_rows(reward: Callable[..., np.ndarray], rows: Sequence[dict[str, Any]], batch_size: int) -> np.ndarray:
    """The reward of every stored completion, ``batch_size`` at a time."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    scores = []
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        scores.append(np.asarray(reward([r["prompt"] for r in batch], [r["completion"] for r in batch],
                                        [r.get("metadata") or {} for r in batch]), dtype=float))
    return np.concatenate(scores) if scores else np.empty(0)


def _reward_for(spec: str, env_id: str) -> Callable[..., np.ndarray]:
    from llm_gym import make_reward
    from llm_gym.tasks import TASKS, make_task

    name = env_name(env_id)
    task = make_task(name) if name in TASKS else None
    try:
        return make_reward(spec.replace("{env}", name), task=task)
    except Exception as err:
        raise ValueError(f"cannot build reward {spec!r} for {env_id}: {err}") from err


def rescore(config: RescoreConfig, log: Callable[[str], None] = print) -> RescoreSummary:
    """Score every recorded run's stored rollouts with ``config.reward``; append one line per run."""
    if not config.column or not all(c.isalnum() or c in "-_" for c in config.column):
        raise ValueError(f"column must be letters, digits, '-' or '_', got {config.column!r}")
    records_path = records_file(config.records) if Path(config.records).is_dir() else Path(config.records)
    records = read_records(records_path)
    if not records:
        raise ValueError(f"no results records in {records_path}")
    root = Path(config.rollouts_dir) if config.rollouts_dir else default_rollouts_root(records_path)
    output = Path(config.rescores_file) if config.rescores_file else rescores_path(records_path)
    earlier = [r for r in read_rescores(output) if r["column"] == config.column]
    other_specs = sorted({r["reward"] for r in earlier} - {config.reward})
    if other_specs:
        raise ValueError(f"column {config.column!r} in {output} already holds scores from reward {other_specs[0]!r}; "
                         f"choose another column name for {config.reward!r}")
    done = {(r["algo"], r["env_id"], int(r["seed"]), r["config_hash"]) for r in earlier}
    summary = RescoreSummary()
    rewards: dict[str, Callable[..., np.ndarray]] = {}
    for record in records:
        if config.env_ids and record.env_id not in config.env_ids:
            continue
        key = rescore_key(record)
        if key in done:
            summary.skipped += 1
            continue
        path = record_rollouts(root, record)
        if not path.is_file():
            summary.missing.append(f"{record.algo} on {record.env_id} seed={record.seed}")
            continue
        start = time.perf_counter()
        rows = read_rollouts(path)
        if record.env_id not in rewards:
            rewards[record.env_id] = _reward_for(config.reward, record.env_id)
        try:
            scores = score_rows(rewards[record.env_id], rows, config.batch_size)
        except (KeyError, IndexError, TypeError) as err:
            hint = "" if all("metadata" in r for r in rows) else (
                "; these rows store no 'metadata', which specs that check the task's answer need")
            raise ValueError(f"{path}: reward {config.reward!r} failed on the stored rollouts ({err!r}){hint}") from err
        line = {"column": config.column, "reward": config.reward, "algo": key[0], "env_id": key[1], "seed": key[2],
                "config_hash": key[3], "value": float(scores.mean()) if len(scores) else None,
                "episodes": len(scores), "wall_s": time.perf_counter() - start}
        append_json_line(output, json.dumps(line))
        summary.scored.append(line)
        done.add(key)
    log(f"rescore {config.column!r}: {len(summary.scored)} runs scored, {summary.skipped} already scored, "
        f"{len(summary.missing)} without stored rollouts; appended to {output}")
    return summary


def rescore_columns(records: list[RunRecord], path: str | Path) -> tuple[list[str], list[RunRecord]]:
    """Column names in a rescores file and copies of ``records`` with each run's rescored values in
    ``final`` under ``rescore/<column>`` (what the leaderboard tabulates)."""
    lines = read_rescores(path)
    columns = sorted({line["column"] for line in lines})
    values: dict[tuple, dict[str, Any]] = {}
    for line in lines:
        values.setdefault((line["algo"], line["env_id"], int(line["seed"]), line["config_hash"]), {})[
            f"rescore/{line['column']}"] = line["value"]
    out = [RunRecord(**{**r.__dict__, "final": {**r.final, **values.get(rescore_key(r), {})}}) for r in records]
    return columns, out


def run_rescore(config: RescoreConfig) -> int:
    """``llm-gym bench rescore``: exit status 1 when no run had stored rollouts to score."""
    summary = rescore(config)
    return 1 if summary.missing and not summary.scored and not summary.skipped else 0

