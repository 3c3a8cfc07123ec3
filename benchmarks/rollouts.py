"""Stored evaluation rollouts: every benchmark run keeps the completions its final score came from.

Why: a leaderboard number is a mean over completions. Keeping the completions (with the proxy
reward, gold reward and KL each got) lets anyone score yesterday's runs with a new reward model
or reward spec in seconds (``benchmarks.rescore``) instead of regenerating the grid. One gzip
JSONL file per run, named by the run's key (label, env, seed, config hash) under a rollouts root
next to the records file; a file is written once, atomically (temporary name, then
``os.replace``), before the run's record is appended, so every record's rollouts are complete.
Rows are ``{prompt, completion, proxy, gold, kl}`` (the learners' ``evaluate(rollouts_path=...)``
format), plus ``metadata`` when the learner stores it (reward specs that need the task's answer).
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from benchmarks.records import RunRecord, config_hash

ROW_KEYS = ("prompt", "completion", "proxy", "gold", "kl")


def default_rollouts_root(records_path: str | Path) -> Path:
    """``<records dir>/rollouts``: rollouts travel with the records file they belong to."""
    return Path(records_path).parent / "rollouts"


def rollouts_file(root: str | Path, algo: str, env_id: str, seed: int, config: dict[str, Any]) -> Path:
    """Where the run with this key keeps its rollouts."""
    return Path(root) / algo / env_id.replace("/", "_") / f"seed{int(seed)}-{config_hash(config)}.jsonl.gz"


def record_rollouts(root: str | Path, record: RunRecord) -> Path:
    return rollouts_file(root, record.algo, record.env_id, record.seed, record.config)


def read_jsonl_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a plain JSONL rollouts file (what a learner's ``evaluate`` appends), checked for ``ROW_KEYS``."""
    rows = []
    with Path(path).open() as f:
        for lineno, line in enumerate(f, start=1):
            if line.strip():
                rows.append(_checked(json.loads(line), path, lineno))
    return rows


def write_rollouts(path: str | Path, rows: Iterable[dict[str, Any]]) -> Path:
    """Write rows as gzip JSONL under a temporary name, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with gzip.open(tmp, "wt", compresslevel=9) as f:
        for row in rows:
            f.write(json.dumps(row, separators=(",", ":")) + "\n")
    os.replace(tmp, path)
    return path


def read_rollouts(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a stored gzip JSONL rollouts file; a row missing a key is an error naming file and line."""
    rows = []
    with gzip.open(path, "rt") as f:
        for lineno, line in enumerate(f, start=1):
            if line.strip():
                rows.append(_checked(json.loads(line), path, lineno))
    return rows


def _checked(row: Any, path: str | Path, lineno: int) -> dict[str, Any]:
    missing = [k for k in ROW_KEYS if not isinstance(row, dict) or k not in row]
    if missing:
        raise ValueError(f"{path}:{lineno}: rollout row is missing {missing} (rows need {list(ROW_KEYS)})")
    return row
