"""Pure scoring helpers shared by tasks (gold verifiers) and rewards (proxy models).

Why one module: a task's verifier and the reward of the same name must agree to the character, so
answer normalisation, exact and numeric matching and the word-level checks of the dialogue and
summarisation families are written once here. It imports nothing else of ``llm_gym``, so both
``llm_gym.tasks`` and ``llm_gym.rewards`` can use it without importing each other.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_WORD = re.compile(r"[a-z0-9]+")
_CLAIM = re.compile(r"^(\d+|yes|no)$")
STOPWORDS = frozenset(
    "a an and are as at be but by do does for from has have how i in is it its me my no not of on or so "
    "that the their there they this to was we what when where which who why will with you your yes any".split()
)


# ---------------------------------------------------------------------------------------- answers
def normalize_answer(text: str) -> str:
    """Whitespace-insensitive comparison form of an answer."""
    return " ".join(text.split())


def exact_match(completions: Sequence[str], answers: Iterable[Any]) -> np.ndarray:
    """1.0 where the completion equals the answer after ``normalize_answer``, else 0.0 (float32)."""
    return np.array(
        [normalize_answer(c) == normalize_answer(str(a)) for c, a in zip(completions, answers)], dtype=np.float32
    )


def first_number(text: str) -> float | None:
    """The first integer or decimal number written in ``text`` (None if there is none)."""
    found = _NUMBER.search(text)
    return None if found is None else float(found.group())


def numeric_match(completions: Sequence[str], answers: Iterable[Any], tolerance: float = 1e-6) -> np.ndarray:
    """1.0 where the completion's first number is within ``tolerance`` of the numeric answer."""

    def match(completion: str, answer: Any) -> bool:
        number = first_number(completion)
        return number is not None and abs(number - float(answer)) <= tolerance

    return np.array([match(c, a) for c, a in zip(completions, answers)], dtype=np.float32)


# ------------------------------------------------------------------------------------ text checks
def words(text: str) -> list[str]:
    """Lower-case alphanumeric words: the unit every word-level check counts in."""
    return _WORD.findall(text.lower())


def content_words(text: str) -> list[str]:
    """Words that carry content (not stopwords), in order, without repeats."""
    return list(dict.fromkeys(w for w in words(text) if w not in STOPWORDS))


def is_claim(word: str) -> bool:
    """A checkable claim: a number, ``yes`` or ``no``."""
    return _CLAIM.match(word) is not None


def fact_coverage(text: str, facts: Sequence[str]) -> float:
    """Fraction of ``facts`` (words or phrases) that appear in ``text`` as whole words."""
    if not facts:
        return 1.0
    padded = f" {' '.join(words(text))} "
    return sum(f" {' '.join(words(fact))} " in padded for fact in facts) / len(facts)


def claim_precision(text: str, facts: Sequence[str]) -> float:
    """Of the checkable claims in ``text`` (numbers, yes/no), the fraction that are facts (1 if none)."""
    claims = [w for w in words(text) if is_claim(w)]
    if not claims:
        return 1.0
    allowed = {w for fact in facts for w in words(fact)}
    return sum(c in allowed for c in claims) / len(claims)


def format_fluency(text: str, max_words: int = 12) -> float:
    """Mean of five surface checks of a one-sentence answer (a cheap grammar proxy, in [0, 1]).

    1-``max_words`` words; ends with ``.``, ``!`` or ``?``; only letters, digits, spaces and
    ``,'.!?``; starts with a letter or digit; no word repeated back to back.
    """
    stripped, tokens = text.strip(), words(text)
    checks = (
        1 <= len(tokens) <= max_words,
        stripped[-1:] in (".", "!", "?"),
        re.fullmatch(r"[A-Za-z0-9 ,'.!?]*", stripped) is not None,
        stripped[:1].isalnum(),
        all(a != b for a, b in zip(tokens, tokens[1:])),
    )
    return sum(checks) / len(checks)


# ---------------------------------------------------------------------------------- dialogue turns
def current_turn(meta: Mapping[str, Any]) -> Mapping[str, Any]:
    """The turn being scored: ``metadata["turns"][metadata["turn"]]``, with a clear error otherwise."""
    try:
        return meta["turns"][int(meta.get("turn", 0))]
    except (KeyError, IndexError, TypeError) as err:
        raise KeyError(
            "dialogue rewards need metadata 'turns' (a list with one entry per assistant turn) and 'turn' "
            f"(the index being scored); got keys {sorted(meta)}"
        ) from err


def informativeness(answer: str, turn: Mapping[str, Any]) -> float:
    """Requested facts stated (coverage), discounted by checkable claims that are not facts."""
    facts = turn["facts"]
    return fact_coverage(answer, facts) * claim_precision(answer, facts)


def relevance(answer: str, turn: Mapping[str, Any], topics: Sequence[str] = ()) -> float:
    """About what the user asked: the turn's topic mentioned, divided by 1 + other topics mentioned.

    Loaded chats have no topic label: their topic words are the user's content words that the
    reference answer repeats, and relevance is the fraction of those the answer mentions (1 when
    the reference repeats none, as nothing is then measurable).
    """
    said = set(words(answer))
    topic = turn.get("topic")
    if topic:
        others = sum(t in said for t in topics if t != topic)
        return float(topic in said) / (1 + others)
    asked = turn.get("topic_words", [])
    return sum(w in said for w in asked) / len(asked) if asked else 1.0


# -------------------------------------------------------------------------------------- summaries
def conciseness(summary: str, max_words: int) -> float:
    """1 within the word budget, ``max_words / n_words`` beyond it, 0 for an empty summary."""
    n = len(words(summary))
    return 0.0 if n == 0 else min(1.0, max_words / n)


def summary_score(summary: str, meta: Mapping[str, Any]) -> float:
    """Gold of a summary: key-fact coverage x conciseness, divided by 1 + distractor facts stated."""
    said = set(words(summary))
    wrong = sum(d in said for d in meta.get("distractors", ()))
    return fact_coverage(summary, meta["facts"]) * conciseness(summary, int(meta["max_words"])) / (1 + wrong)
