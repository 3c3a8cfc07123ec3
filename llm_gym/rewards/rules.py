"""Rule-based rewards and verifiers: answer matching, length and format checks."""

from __future__ import annotations

import re

import numpy as np

from llm_gym.rewards.base import RewardModel
from llm_gym.tasks.base import Task
from llm_gym.tasks.procedural import normalize_answer

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


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
        return np.array([normalize_answer(c) == normalize_answer(_answer(m)) for c, m in zip(completions, metadata)])


class NumericMatch(RewardModel):
    """1 if the first number in the completion equals the numeric answer within ``tolerance``."""

    name = "numeric_match"

    def __init__(self, tolerance: float = 1e-6):
        self.tolerance = tolerance

    def __call__(self, prompts, completions, metadata) -> np.ndarray:
        def match(completion: str, answer: str) -> bool:
            found = _NUMBER.search(completion)
            return found is not None and abs(float(found.group()) - float(answer)) <= self.tolerance

        return np.array([match(c, _answer(m)) for c, m in zip(completions, metadata)])


class Verifier(RewardModel):
    """The task's own gold verifier used as a reward (the default gold reward of every env)."""

    name = "verifier"

    def __init__(self, task: Task):
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
