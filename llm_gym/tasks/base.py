"""Tasks: seeded prompt sources with reference answers and a gold verifier."""

from __future__ import annotations

import zlib
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, ClassVar, Literal

import numpy as np
from transformers import PreTrainedTokenizerBase

from llm_gym.models import train_tokenizer

Split = Literal["train", "test"]


@dataclass(frozen=True)
class Sample:
    """One prompt with the reference completion used for SFT and reference-based rewards."""

    prompt: str
    reference: str
    metadata: Mapping[str, Any] = field(default_factory=dict)
    # What the train/test hash reads when ``prompt`` is a rendering (chat rows: the messages), so a
    # new template or tokenizer moves no row between splits; empty: the prompt itself.
    split_key: str = ""
    # The chat messages ``prompt`` was rendered from (the answer excluded), for exporters that need them
    # unrendered (TRL's conversational format); empty: the prompt is plain text.
    messages: tuple[Mapping[str, Any], ...] = ()


def split_of(prompt: str, test_fraction: float) -> Split:
    """Stable hash split, so train and test never share a prompt whatever the seed."""
    bucket = zlib.crc32(prompt.encode()) % 10_000
    return "test" if bucket < test_fraction * 10_000 else "train"


@lru_cache(maxsize=32)
def char_tokenizer(texts: tuple[str, ...]) -> PreTrainedTokenizerBase:
    """A character tokenizer over ``texts``, cached so that making many envs of a task trains it once."""
    return train_tokenizer(texts, kind="char")


class Task(ABC):
    """A family of prompts an env serves, with the reference answers and a verifier.

    Why a class and not a dataset: procedural tasks draw fresh prompts from a seeded generator, so
    an env can run for millions of episodes, while ``split_of`` keeps held-out prompts out of
    training. A task also owns its gold verifier (the reward we trust) and, for multi-turn tasks,
    the other side of the conversation (``reply``). An env asks the task for its tokenizer when the
    user gives none (``default_tokenizer``) and for its window (``window``), so tasks whose text or
    lengths are only known from their data (files, reasoning-gym) need no env factory of their own.
    """

    name: ClassVar[str] = "task"
    description: ClassVar[str] = ""
    default_reward: ClassVar[str] = "verifier"
    max_prompt_tokens: ClassVar[int] = 32
    max_new_tokens: ClassVar[int] = 16
    test_fraction: ClassVar[float] = 0.1

    @abstractmethod
    def generate(self, rng: np.random.Generator) -> Sample:
        """Draw one sample from either split."""

    @abstractmethod
    def verify(
        self, prompts: Sequence[str], completions: Sequence[str], metadata: Sequence[Mapping[str, Any]]
    ) -> np.ndarray:
        """Gold reward in [0, 1] for a batch of completions."""

    def sample(self, rng: np.random.Generator, split: Split = "train") -> Sample:
        """Draw one sample of ``split`` (rejection on the stable hash split)."""
        for _ in range(10_000):
            sample = self.generate(rng)
            if split_of(sample.prompt, self.test_fraction) == split:
                return sample
        raise RuntimeError(f"task {self.name!r} produced no {split!r} prompt in 10000 draws")

    def dataset(self, split: Split, size: int, seed: int = 0) -> list[Sample]:
        """A fixed list of samples, e.g. SFT data or an evaluation set."""
        rng = np.random.default_rng(seed)
        return [self.sample(rng, split) for _ in range(size)]

    def reference(self, sample: Sample, turn: int) -> str:
        """The reference answer of ``turn`` (multi-turn tasks override; single-turn: ``sample.reference``)."""
        return sample.reference

    def reply(self, sample: Sample, completions: Sequence[str]) -> str | None:
        """The other side's next message after the policy's turns so far; None ends the episode."""
        return None

    def default_tokenizer(self) -> PreTrainedTokenizerBase:
        """The tokenizer an env uses when none is given, so ``gymnasium.make(id)`` works offline.

        Default: a character tokenizer over the prompts and references of 2000 train and 200 test
        samples (seed 0). Tasks whose text is not covered by that sample override it.
        """
        samples = self.dataset("train", 2000, seed=0) + self.dataset("test", 200, seed=0)
        return char_tokenizer(tuple(s.prompt + s.reference for s in samples))

    def window(self, tokenizer: PreTrainedTokenizerBase, max_new_tokens: int | None = None) -> tuple[int, int]:
        """``(max_prompt_tokens, max_new_tokens)`` of an env with ``tokenizer`` whose completions are
        ``max_new_tokens`` long (None: the task's own length); default: the class values. A multi-turn task's
        prompt holds its earlier answers, so its prompt window grows with ``max_new_tokens``."""
        return self.max_prompt_tokens, max_new_tokens or self.max_new_tokens
