"""The feedback file format: preference pairs and pointwise ratings, as JSONL or a ``datasets.Dataset``.

Why in the library: feedback collected by ``llm-gym feedback`` trains llm_gym's reward models and
DPO, and the same labels export to TRL's preference format (``integrations.trl.feedback_to_dataset``),
so one reader with one set of errors (file and line) serves all of them. A row is either a pair
``{"prompt", "chosen", "rejected"[, "margin"]}`` or a rating ``{"prompt", "completion", "label"}``;
other fields (the collector's ``"id"``) are ignored.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class PreferencePair:
    """One preference label: ``chosen`` was judged better than ``rejected`` for ``prompt``."""

    prompt: str
    chosen: str
    rejected: str
    margin: float = 0.0


@dataclass(frozen=True)
class Rating:
    """One pointwise label: ``completion`` was judged good (1) or bad (0) for ``prompt``."""

    prompt: str
    completion: str
    label: float


@dataclass
class FeedbackData:
    """Feedback rows read from JSONL, with the count of rows skipped and why."""

    pairs: list[PreferencePair] = field(default_factory=list)
    ratings: list[Rating] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)


def _require(row: Any, keys: Sequence[str], where: str, texts: Sequence[str]) -> None:
    """``row`` is an object with every one of ``keys``, and its ``texts`` fields are strings."""
    if not isinstance(row, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(row).__name__}")
    missing = [k for k in keys if k not in row]
    if missing:
        raise ValueError(f"{where}: row is missing field(s) {missing}; has {sorted(row)}")
    for key in texts:
        if isinstance(row[key], list):
            raise ValueError(
                f"{where}: field {key!r} is a list of chat messages (TRL's conversational format); feedback rows hold "
                "texts: render the messages with the tokenizer's chat template (apply_chat_template(..., tokenize=False))"
            )
        if not isinstance(row[key], str):
            raise ValueError(f"{where}: field {key!r} must be a string, got {type(row[key]).__name__}")


def _feedback_rows(source: Any) -> Iterator[tuple[str, Any]]:
    """``(where, row)`` of a JSONL file, a ``save_to_disk`` directory or an in-memory ``datasets.Dataset``."""
    where = "in-memory dataset"
    if not hasattr(source, "column_names") and Path(source).is_dir():
        import datasets  # optional: the [datasets] extra

        where, source = str(source), datasets.load_from_disk(str(source))
    if hasattr(source, "column_names"):
        if isinstance(source.column_names, dict):
            raise ValueError(f"{where} is a DatasetDict (splits {sorted(source)}); give one split of feedback rows")
        yield from ((f"{where} row {i}", row) for i, row in enumerate(source, start=1))
        return
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"feedback file not found: {path}")
    with path.open() as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    yield f"{path}:{number}", json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}:{number}: not valid JSON ({err.msg})") from None


def read_feedback(source: str | Path | Any) -> FeedbackData:
    """Read preference rows ``{prompt, chosen, rejected[, margin]}`` or ratings ``{prompt, completion, label}``
    from a JSONL file, a ``save_to_disk`` directory or an in-memory ``datasets.Dataset``.

    A pair whose chosen equals rejected carries no preference and is skipped (counted as
    ``chosen_equals_rejected``); a file mixing both kinds is an error. Errors name file and line (or row).
    """
    data = FeedbackData()
    for where, row in _feedback_rows(source):
        if isinstance(row, dict) and "chosen" in row:
            _require(row, ("prompt", "chosen", "rejected"), where, texts=("prompt", "chosen", "rejected"))
            if row["chosen"] == row["rejected"]:
                data.skipped["chosen_equals_rejected"] = data.skipped.get("chosen_equals_rejected", 0) + 1
                continue
            data.pairs.append(PreferencePair(row["prompt"], row["chosen"], row["rejected"], float(row.get("margin") or 0.0)))
        else:
            _require(row, ("prompt", "completion", "label"), where, texts=("prompt", "completion"))
            data.ratings.append(Rating(row["prompt"], row["completion"], float(row["label"])))
        if data.pairs and data.ratings:
            raise ValueError(f"{where}: file mixes preference pairs and pointwise ratings; use one kind per file")
    return data
