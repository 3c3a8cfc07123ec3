"""Reading task data from files: JSON-lines rows, required fields and chat prompts, with errors
that name the file and line.

Why its own module: the dataset loader (``DatasetTask``) and every family task that reads its own
JSONL format (``FamilyTask``) parse rows the same way and report the same ``file line N: ...``
errors, so a user who mistypes a field gets the same kind of message from every task.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from jinja2 import TemplateError
from transformers import PreTrainedTokenizerBase


class DatasetError(ValueError):
    """A dataset file or row that cannot be turned into samples; the message names file and line."""


def jsonl_rows(path: Path) -> Iterable[tuple[str, Any]]:
    """``(where, row)`` for each non-blank line of a JSONL file; ``where`` is ``"<path> line N"``."""
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{path} line {number}"
            try:
                yield where, json.loads(line)
            except json.JSONDecodeError as error:
                raise DatasetError(f"{where}: invalid JSON ({error.msg} at column {error.colno})") from error


def require_field(row: Mapping[str, Any], key: str, where: str, fmt: str) -> Any:
    """``row[key]``, or a ``DatasetError`` naming the place, the field and the format."""
    value = row.get(key)
    if value is None:
        raise DatasetError(f"{where}: row is missing field {key!r} (format {fmt!r})")
    return value


def require_text(row: Mapping[str, Any], key: str, where: str, fmt: str) -> str:
    """``row[key]`` as a string, or a ``DatasetError`` naming the place, the field and the format."""
    value = require_field(row, key, where, fmt)
    if not isinstance(value, str):
        raise DatasetError(f"{where}: field {key!r} must be a string, got {type(value).__name__} (format {fmt!r})")
    return value


def chat_prompt(messages: Any, where: str, tokenizer: PreTrainedTokenizerBase | None) -> tuple[str, str]:
    """``(prompt, reference)`` of a chat: the chat template over all but the last (assistant) message."""
    if tokenizer is None:
        raise DatasetError(f"{where}: format 'messages' needs a tokenizer (its chat template builds the prompt)")
    if not isinstance(messages, list) or len(messages) < 2:
        raise DatasetError(f"{where}: field 'messages' must be a list of at least 2 messages (format 'messages')")
    for k, message in enumerate(messages):
        if not isinstance(message, Mapping) or not isinstance(message.get("role"), str) or not isinstance(
            message.get("content"), str
        ):
            raise DatasetError(f"{where}: message {k} needs string 'role' and 'content' fields (format 'messages')")
    if messages[-1]["role"] != "assistant":
        raise DatasetError(
            f"{where}: the last message must be the assistant's (the reference), got role {messages[-1]['role']!r}"
        )
    try:
        prompt = tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True, tokenize=False)
    except (ValueError, TemplateError) as error:  # no template (ValueError), or the template refused the row
        raise DatasetError(f"{where}: cannot apply the tokenizer's chat template to this row: {error}") from error
    return prompt, messages[-1]["content"]
