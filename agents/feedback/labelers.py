"""Who labels completions: a simulated person (a gold reward, optionally noisy) or a real one at the terminal.

Why two behind one shape: the project produces preference data without people by asking the
gold verifier, and studies noisy feedback by flipping a fraction of its answers; a researcher
who wants real labels runs the same collection with a person at the keyboard. Both answer with
the same decisions, ``"a"``/``"b"``/``"tie"``/``"skip"`` for a pair and ``"good"``/``"bad"``/``"skip"``
for a single completion, so the files they produce are interchangeable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from llm_gym.rewards import RewardModel

PAIR_KEYS = {"a": "a", "b": "b", "t": "tie", "tie": "tie", "s": "skip", "skip": "skip", "q": "quit", "quit": "quit"}
POINT_KEYS = {"g": "good", "good": "good", "b": "bad", "bad": "bad", "s": "skip", "skip": "skip", "q": "quit", "quit": "quit"}


class SimulatedLabeler:
    """A gold reward standing in for a person: prefers the higher-scoring completion; flips with prob ``noise``.

    Equal gold scores are a ``"tie"`` (no preference to learn from); ``noise`` flips a decided
    pair's answer (or a rating's good/bad) independently with the given probability, the usual
    model of a careless labeler.
    """

    def __init__(self, gold: RewardModel, noise: float = 0.0, good_threshold: float = 0.5, seed: int = 0):
        if not 0.0 <= noise <= 1.0:
            raise ValueError(f"label noise must be a probability in [0, 1], got {noise}")
        self.gold, self.noise, self.good_threshold = gold, noise, good_threshold
        self.rng = np.random.default_rng(seed)

    def scores(self, prompts: Sequence[str], completions: Sequence[str], metadata: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Gold scores of a batch (one reward call for the whole batch)."""
        return self.gold.score(prompts, completions, metadata).total

    def compare(self, score_a: np.ndarray, score_b: np.ndarray) -> list[str]:
        """``"a"``, ``"b"`` or ``"tie"`` per pair, from the two completions' gold scores."""
        flip = self.rng.random(len(score_a)) < self.noise
        a_wins = (score_a > score_b) ^ flip
        return ["tie" if sa == sb else ("a" if win else "b") for sa, sb, win in zip(score_a, score_b, a_wins)]

    def rate(self, scores: np.ndarray) -> list[str]:
        """``"good"`` or ``"bad"`` per completion (gold score >= ``good_threshold``), noise applied."""
        good = (scores >= self.good_threshold) ^ (self.rng.random(len(scores)) < self.noise)
        return ["good" if g else "bad" for g in good]


class TerminalLabeler:
    """A person at the terminal: shows the prompt and one or two completions, reads one key per item.

    ``input_fn``/``output_fn`` default to ``input``/``print`` and are injectable so scripted input
    can drive it in tests. Unknown keys are asked again; end of input answers ``"quit"``; Ctrl-C
    (``KeyboardInterrupt``) propagates so the session can stop after the labels already written.
    Texts are shown with ``repr`` so empty completions and whitespace are visible.
    """

    def __init__(self, input_fn: Callable[[str], str] = input, output_fn: Callable[[str], None] = print):
        self.input_fn, self.output_fn = input_fn, output_fn

    def _ask(self, question: str, keys: Mapping[str, str]) -> str:
        while True:
            try:
                answer = self.input_fn(question).strip().lower()
            except EOFError:
                return "quit"
            if answer in keys:
                return keys[answer]
            self.output_fn(f"unknown answer {answer!r}; type one of: {', '.join(k for k in keys if len(k) == 1)}")

    def compare(self, header: str, prompt: str, a: str, b: str) -> str:
        """``"a"``, ``"b"``, ``"tie"``, ``"skip"`` or ``"quit"`` for one pair."""
        self.output_fn(f"\n{header}\nprompt: {prompt!r}\n  A: {a!r}\n  B: {b!r}")
        return self._ask("better? [a] / [b] / [t]ie / [s]kip / [q]uit: ", PAIR_KEYS)

    def rate(self, header: str, prompt: str, completion: str) -> str:
        """``"good"``, ``"bad"``, ``"skip"`` or ``"quit"`` for one completion."""
        self.output_fn(f"\n{header}\nprompt: {prompt!r}\n  completion: {completion!r}")
        return self._ask("[g]ood / [b]ad / [s]kip / [q]uit: ", POINT_KEYS)
