"""Rule-based rewards and verifiers: answer matching, length and format checks."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from llm_gym.rewards.base import RewardModel
from llm_gym.scoring import exact_match, numeric_match


def _answer(meta) -> str:
    if "answer" in meta:
        return str(meta["answer"])
    if "reference" in meta:
        return str(meta["reference"])
    raise KeyError("answer-matching rewards need metadata 'answer' or 'reference' for every sample")


class ExactMatch(RewardModel):
    """1 if the completion equals the answer (whitespace-normalised), else 0."""

    name = "exact_match"

    def __call__(self, prompts, completions, metadata) -> np.ndarray:
        return exact_match(completions, [_answer(m) for m in metadata])


class NumericMatch(RewardModel):
    """1 if the first number in the completion equals the numeric answer within ``tolerance``."""

    name = "numeric_match"

    def __init__(self, tolerance: float = 1e-6):
        self.tolerance = tolerance

    def __call__(self, prompts, completions, metadata) -> np.ndarray:
        return numeric_match(completions, [_answer(m) for m in metadata], self.tolerance)


class HasVerifier(Protocol):
    """What ``Verifier`` needs of a task: its gold ``verify`` (every ``llm_gym.tasks.Task`` has one)."""

    def verify(
        self, prompts: Sequence[str], completions: Sequence[str], metadata: Sequence[Mapping[str, Any]]
    ) -> np.ndarray: ...


class Verifier(RewardModel):
    """The task's own gold verifier used as a reward (the default gold reward of every env)."""

    name = "verifier"

    def __init__(self, task: HasVerifier):
        self.task = task

    def __call__(self, prompts, completions, metadata) -> np.ndarray:
        return self.task.verify(prompts, completions, metadata)


class LengthCheck(RewardModel):
    """1 if the completion has between ``min_chars`` and ``max_chars`` characters, else 0."""

    name = "length"

    def __init__(self, min_chars: int = 1, max_chars: int = 10**9):
        self.min_chars, self.max_chars = min_chars, max_chars

    def __call__(self, prompts, completions, metadata) -> np.ndarray:
        return np.array([self.min_chars <= len(c) <= self.max_chars for c in completions])


class FormatCheck(RewardModel):
    """1 if the stripped completion fully matches the regular expression ``pattern``, else 0."""

    name = "format"

    def __init__(self, pattern: str):
        self.pattern = re.compile(pattern)

    def __call__(self, prompts, completions, metadata) -> np.ndarray:
        return np.array([self.pattern.fullmatch(c.strip()) is not None for c in completions])
