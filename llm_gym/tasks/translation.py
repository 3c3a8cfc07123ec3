"""Translation: a deterministic toy language pair, or ``source``/``target`` rows from JSONL files.

The toy target language ("Tiny") changes both words and order, so a model must learn a lexicon
*and* a reordering, as in real translation, at a size a 600k-parameter model learns on a CPU:

- English SVO ``[the|a] [adj] noun verb [the|a] [adj] noun`` -> Tiny SOV;
- nouns and adjectives map through a small lexicon, articles disappear, the adjective follows its
  noun, and the object noun takes the accusative suffix ``-n``:
  ``the big cat sees a fish`` -> ``mi ga san ka``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from llm_gym.scoring import exact_match
from llm_gym.tasks.base import Sample
from llm_gym.tasks.family import FamilyTask
from llm_gym.tasks.files import require_text

NOUNS = {"cat": "mi", "dog": "wu", "bird": "pi", "fish": "sa", "boy": "ko", "girl": "ne"}
ADJECTIVES = {"big": "ga", "small": "ti", "red": "ro", "old": "ba"}
VERBS = {"sees": "ka", "likes": "lu", "eats": "mo", "finds": "fe"}


def translate(source: str) -> str:
    """English -> Tiny for sentences of the generator's grammar (raises on anything else)."""
    words = source.split()
    phrases, current = [], []
    for word in words:
        if word in ("the", "a"):
            continue
        current.append(word)
        if word in NOUNS:
            phrases.append(current)
            current = []
        elif word in VERBS:
            phrases.append(current)
            current = []
    if len(phrases) != 3 or current:
        raise ValueError(f"not a sentence of the toy grammar: {source!r}")
    (*subject_adj, subject), (verb,), (*object_adj, obj) = phrases

    def noun_phrase(noun: str, adjectives: list[str], suffix: str) -> list[str]:
        return [NOUNS[noun] + suffix] + [ADJECTIVES[a] for a in adjectives]

    return " ".join(noun_phrase(subject, subject_adj, "") + noun_phrase(obj, object_adj, "n") + [VERBS[verb]])


class Translation(FamilyTask):
    """``the big cat sees a fish =`` -> ``mi ga san ka`` (or ``{source} =`` -> target from files).

    Gold: exact match with the reference translation (the toy language is deterministic, so there
    is one right answer); BLEU and chrF (``reward="chrf"``, the default proxy) give partial credit.
    Files: JSONL rows with ``source`` and ``target`` (``data_files=``, optional ``test_files=``).
    """

    name = "translation"
    description = "English -> toy SOV language with a lexicon; gold: exact match (proxy: chrF)"
    default_reward = "chrf"
    max_prompt_tokens = 40
    max_new_tokens = 20
    data_format = "translation"

    def __init__(self, adjective_prob: float = 0.4, **data_kwargs: Any):
        if not 0.0 <= adjective_prob <= 1.0:
            raise ValueError(f"adjective_prob must be in [0, 1], got {adjective_prob}")
        self.adjective_prob = adjective_prob
        super().__init__(**data_kwargs)

    @staticmethod
    def prompt(source: str) -> str:
        return f"{source} ="

    def generate(self, rng: np.random.Generator) -> Sample:
        def pick(options) -> str:
            options = list(options)
            return options[int(rng.integers(len(options)))]

        def noun_phrase() -> list[str]:
            adjective = [pick(ADJECTIVES)] if rng.random() < self.adjective_prob else []
            return [pick(("the", "a"))] + adjective + [pick(NOUNS)]

        source = " ".join(noun_phrase() + [pick(VERBS)] + noun_phrase())
        target = translate(source)
        return Sample(self.prompt(source), target, {"answer": target, "source": source})

    def row_to_sample(self, row: Mapping[str, Any], where: str) -> Sample:
        source, target = require_text(row, "source", where, self.data_format), require_text(row, "target", where, self.data_format)
        extra = {k: v for k, v in row.items() if k not in ("source", "target")}
        return Sample(self.prompt(source), target, {**extra, "answer": target, "source": source})

    def verify(
        self, prompts: Sequence[str], completions: Sequence[str], metadata: Sequence[Mapping[str, Any]]
    ) -> np.ndarray:
        return exact_match(completions, [m["answer"] for m in metadata])
