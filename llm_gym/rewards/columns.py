"""Reward functions written in TRL's signature, ``f(prompts, completions, **columns)``, as llm_gym rewards.

Why: TRL users already have reward functions that take the dataset's columns as keyword
arguments (``def accuracy(completions, answer, **kwargs)``). An llm_gym env keeps a sample's
columns in its metadata, so such a function runs unchanged: each keyword it names is filled with
that column of the batch's metadata, and a function with ``**kwargs`` gets every column all rows
share. Completions and prompts are plain strings here (llm_gym renders chat prompts itself).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from llm_gym.rewards.base import RewardModel

# Keywords TRL's GRPOTrainer passes besides the dataset columns; a function that names one gets None
# (an env scores completion texts: it has no trainer state, and a completion's ids are its tokenizer's business).
TRL_RESERVED = ("completion_ids", "trainer_state", "log_extra", "log_metric", "environments")
LLM_GYM_NAMES = {"prompts", "completions", "metadata"}


def is_trl_style(fn: Callable[..., Any]) -> bool:
    """TRL style: takes ``**kwargs``, or names ``completions`` and a column besides prompts/completions/metadata."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return True
    return "completions" in params and bool(set(params) - LLM_GYM_NAMES)


class TRLStyleReward(RewardModel):
    """Calls ``fn(prompts=..., completions=..., **columns)`` with the named columns taken from the metadata."""

    def __init__(self, fn: Callable[..., Any], name: str | None = None, dense: bool = False):
        self.fn, self.dense = fn, dense
        self.name = name or getattr(fn, "__name__", "reward")
        params = inspect.signature(fn).parameters
        self.takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        named = [n for n, p in params.items() if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)]
        self.passes_prompts = "prompts" in named or self.takes_all
        self.reserved = [n for n in named if n in TRL_RESERVED]
        self.columns = {n: params[n].default is inspect.Parameter.empty for n in named
                        if n not in ("prompts", "completions") and n not in TRL_RESERVED}

    def _column(self, key: str, required: bool, metadata: Sequence[Mapping[str, Any]]) -> list[Any] | None:
        missing = next((i for i, meta in enumerate(metadata) if key not in meta), None)
        if missing is None:
            return [meta[key] for meta in metadata]
        if not required:
            return None
        have = sorted(metadata[missing])
        raise ValueError(
            f"reward {self.name!r} needs column {key!r}, which sample {missing} of the batch does not have "
            f"(its columns: {have}); add the column to the dataset or give the parameter a default"
        )

    def __call__(self, prompts, completions, metadata) -> np.ndarray:
        kwargs: dict[str, Any] = {"completions": list(completions)}
        if self.passes_prompts:
            kwargs["prompts"] = list(prompts)
        kwargs.update({name: None for name in self.reserved})
        for key, required in self.columns.items():
            column = self._column(key, required, metadata)
            if column is not None:
                kwargs[key] = column
        if self.takes_all and metadata:
            shared = set(metadata[0]).intersection(*metadata[1:])
            kwargs.update({key: [meta[key] for meta in metadata] for key in sorted(shared) if key not in kwargs})
        scores = list(awaited(self.fn(**kwargs)))
        none = [i for i, score in enumerate(scores) if score is None]
        if none:
            raise ValueError(
                f"reward {self.name!r} returned None for sample(s) {none[:8]} of the batch; an env needs a number for "
                "every completion (TRL reads None as 'not applicable' when it sums several functions: give those rows 0)"
            )
        return np.asarray(scores, dtype=np.float32)


def awaited(result: Any) -> Any:
    """The value of a coroutine (an ``async def`` reward, as TRL allows) or ``result`` itself. Inside a running
    event loop (a notebook) the coroutine runs to completion in a thread with its own loop."""
    if not inspect.isawaitable(result):
        return result

    async def wait() -> Any:
        return await result

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(wait())
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, wait()).result()
