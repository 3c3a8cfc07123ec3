"""Built-in procedural tasks small enough for a tiny model to learn on a CPU."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from llm_gym.scoring import exact_match
from llm_gym.tasks.base import Sample, Task

_LETTERS = "abcdefghij"


class ExactAnswerTask(Task):
    """A task whose gold reward is an exact match with ``metadata['answer']``."""

    def verify(
        self, prompts: Sequence[str], completions: Sequence[str], metadata: Sequence[Mapping[str, Any]]
    ) -> np.ndarray:
        return exact_match(completions, [m["answer"] for m in metadata])


class Arithmetic(ExactAnswerTask):
    """``12+34=`` -> ``46``: multi-digit addition (and optionally subtraction)."""

    name = "arithmetic"
    description = "n-digit addition 'a+b=' -> sum; gold: exact match"
    max_prompt_tokens = 16
    max_new_tokens = 8

    def __init__(self, digits: int = 2, ops: str = "+"):
        if digits < 1 or not ops or set(ops) - set("+-"):
            raise ValueError(f"arithmetic needs digits >= 1 and ops from '+-', got digits={digits}, ops={ops!r}")
        self.digits, self.ops = digits, ops

    def generate(self, rng: np.random.Generator) -> Sample:
        a, b = (int(x) for x in rng.integers(0, 10**self.digits, size=2))
        op = self.ops[int(rng.integers(len(self.ops)))]
        answer = str(a + b if op == "+" else a - b)
        return Sample(f"{a}{op}{b}=", answer, {"answer": answer})


class _StringTransform(ExactAnswerTask):
    """Shared generator for tasks mapping a random letter string to a transformed string."""

    verb = ""
    alphabet = _LETTERS
    max_prompt_tokens = 20
    max_new_tokens = 10

    def __init__(self, min_len: int = 3, max_len: int = 6):
        if not 1 <= min_len <= max_len:
            raise ValueError(f"{self.name} needs 1 <= min_len <= max_len, got {min_len}, {max_len}")
        self.min_len, self.max_len = min_len, max_len

    def transform(self, text: str) -> str:
        raise NotImplementedError

    def generate(self, rng: np.random.Generator) -> Sample:
        n = int(rng.integers(self.min_len, self.max_len + 1))
        text = "".join(rng.choice(list(self.alphabet), size=n))
        answer = self.transform(text)
        return Sample(f"{self.verb} {text}=", answer, {"answer": answer})


class Copy(_StringTransform):
    name, verb, description = "copy", "copy", "copy a letter string; gold: exact match"

    def transform(self, text: str) -> str:
        return text


class Reverse(_StringTransform):
    name, verb, description = "reverse", "reverse", "reverse a letter string; gold: exact match"

    def transform(self, text: str) -> str:
        return text[::-1]


class Sort(_StringTransform):
    name, verb, description = "sort", "sort", "sort the characters of a digit string; gold: exact match"
    alphabet = "0123456789"

    def transform(self, text: str) -> str:
        return "".join(sorted(text))


class Count(ExactAnswerTask):
    """``count a in abaca=`` -> ``3``."""

    name = "count"
    description = "count a letter's occurrences in a string; gold: exact match"
    max_prompt_tokens = 24
    max_new_tokens = 4

    def __init__(self, min_len: int = 3, max_len: int = 8):
        self.min_len, self.max_len = min_len, max_len

    def generate(self, rng: np.random.Generator) -> Sample:
        n = int(rng.integers(self.min_len, self.max_len + 1))
        letters = list(_LETTERS[:4])
        text = "".join(rng.choice(letters, size=n))
        target = letters[int(rng.integers(len(letters)))]
        answer = str(text.count(target))
        return Sample(f"count {target} in {text}=", answer, {"answer": answer})


_SUBJECTS = ["the cat", "a dog", "my friend", "the bird", "a child", "the teacher", "we", "they"]
_VERBS = ["like", "see", "find", "want", "make"]
_KEYWORDS = ["tea", "rain", "music", "books", "apples", "snow", "games", "bread", "milk", "songs"]


class Keyword(Task):
    """``we, rain:`` -> a short sentence about the subject that uses the keyword (controllable generation).

    The gold reward checks the constraint, not the wording: any sentence of 2-8 words that uses the
    keyword and ends with a period scores 1, so RL can find answers the reference never showed.
    """

    name = "keyword"
    description = "write a short sentence using a keyword; gold: keyword present, 2-8 words, ends with '.'"
    max_prompt_tokens = 24
    max_new_tokens = 32

    def generate(self, rng: np.random.Generator) -> Sample:
        keyword = _KEYWORDS[int(rng.integers(len(_KEYWORDS)))]
        subject = _SUBJECTS[int(rng.integers(len(_SUBJECTS)))]
        verb = _VERBS[int(rng.integers(len(_VERBS)))]
        return Sample(f"{subject}, {keyword}:", f"{subject} {verb} {keyword}.", {"keyword": keyword})

    def verify(
        self, prompts: Sequence[str], completions: Sequence[str], metadata: Sequence[Mapping[str, Any]]
    ) -> np.ndarray:
        def ok(completion: str, keyword: str) -> bool:
            words = re.findall(r"[a-z]+", completion.lower())
            return keyword in words and 2 <= len(words) <= 8 and completion.strip().endswith(".")

        return np.array([ok(c, m["keyword"]) for c, m in zip(completions, metadata)], dtype=np.float32)
