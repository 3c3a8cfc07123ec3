"""Tasks: seeded prompt sources with reference answers and a gold verifier."""

from __future__ import annotations

import zlib
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np

Split = Literal["train", "test"]


@dataclass(frozen=True)
class Sample:
    """One prompt with the reference completion used for SFT and reference-based rewards."""

    prompt: str
    reference: str
    metadata: Mapping[str, Any] = field(default_factory=dict)


def split_of(prompt: str, test_fraction: float) -> Split:
    """Stable hash split, so train and test never share a prompt whatever the seed."""
    bucket = zlib.crc32(prompt.encode()) % 10_000
    return "test" if bucket < test_fraction * 10_000 else "train"


class Task(ABC):
    """A family of prompts an env serves, with the reference answers and a verifier.

    Why a class and not a dataset: procedural tasks draw fresh prompts from a seeded generator, so
    an env can run for millions of episodes, while ``split_of`` keeps held-out prompts out of
    training. A task also owns its gold verifier (the reward we trust) and, for multi-turn tasks,
    the other side of the conversation (``reply``).
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
