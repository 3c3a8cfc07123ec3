"""Summarisation: short procedural documents with known key facts, or ``document``/``summary`` files.

A document states three facts about one person (city, job, what they like) among distractor
sentences, some about another person. The reference summary keeps the three facts and the name
in one short sentence, the seed's "concise, informative" summary. The key facts, the distractor
facts and a word budget travel in the metadata, so fact coverage and conciseness are measurable
without a reference, and ROUGE with one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from llm_gym.scoring import content_words, summary_score, words
from llm_gym.tasks.base import Sample
from llm_gym.tasks.family import FamilyTask
from llm_gym.tasks.files import DatasetError, require_text

NAMES = ("ann", "bob", "eve", "tom", "ida", "leo", "zoe", "max")
CITIES = ("rome", "oslo", "lima", "bern", "kiev", "cairo")
JOBS = ("baker", "nurse", "pilot", "judge", "cook", "guard")
LIKES = ("tea", "chess", "jazz", "golf", "cats", "rain")
FILLERS = ("it was cold.", "the bus was late.", "the shop was shut.", "it rained a lot.")
EXTRA_WORDS = 3  # word budget = reference length + this


class Summarization(FamilyTask):
    """``eve likes jazz. it was cold. eve lives in oslo. bob lives in rome. eve works as a cook.\\nsummary: ``
    -> ``eve, cook in oslo, likes jazz.``

    Gold (``verify``): fraction of the key facts stated x conciseness (word budget: reference + 3)
    / (1 + distractor facts stated). Proxy default: ``0.4*rouge + 0.4*fact_coverage + 0.2*conciseness``.
    Files: JSONL rows with ``document`` and ``summary``, optionally ``facts`` (list of strings;
    default: the summary's content words) and ``distractors``.
    """

    name = "summarization"
    description = "summarise a short document's key facts about a person; gold: fact coverage*conciseness"
    default_reward = "0.4*rouge + 0.4*fact_coverage + 0.2*conciseness"
    max_prompt_tokens = 112
    max_new_tokens = 40
    data_format = "summarization"

    def __init__(self, fillers: int = 1, **data_kwargs: Any):
        if not 0 <= fillers <= len(FILLERS):
            raise ValueError(f"fillers must be in [0, {len(FILLERS)}], got {fillers}")
        self.fillers = fillers
        super().__init__(**data_kwargs)

    @staticmethod
    def prompt(document: str) -> str:
        return f"{document}\nsummary: "

    def generate(self, rng: np.random.Generator) -> Sample:
        def pick(options: Sequence[str], k: int = 1) -> list[str]:
            return [options[i] for i in rng.choice(len(options), size=k, replace=False)]

        name, other = pick(NAMES, 2)
        (city, other_city), (job,), (like, other_like) = pick(CITIES, 2), pick(JOBS), pick(LIKES, 2)
        sentences = [f"{name} lives in {city}.", f"{name} works as a {job}.", f"{name} likes {like}."]
        distractor = [f"{other} lives in {other_city}.", f"{other} likes {other_like}."][int(rng.integers(2))]
        sentences += [distractor] + pick(FILLERS, self.fillers)
        document = " ".join(sentences[i] for i in rng.permutation(len(sentences)))
        summary = f"{name}, {job} in {city}, likes {like}."
        meta = {
            "facts": [name, job, city, like],
            "distractors": [w for w in words(distractor) if w not in ("lives", "in", "likes")],
            "max_words": len(words(summary)) + EXTRA_WORDS,
        }
        return Sample(self.prompt(document), summary, meta)

    def row_to_sample(self, row: Mapping[str, Any], where: str) -> Sample:
        document = require_text(row, "document", where, self.data_format)
        summary = require_text(row, "summary", where, self.data_format)
        facts = row.get("facts", content_words(summary))
        distractors = row.get("distractors", [])
        for key, value in (("facts", facts), ("distractors", distractors)):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise DatasetError(f"{where}: field {key!r} must be a list of strings (format 'summarization')")
        extra = {k: v for k, v in row.items() if k not in ("document", "summary", "facts", "distractors")}
        meta = {**extra, "facts": facts, "distractors": distractors, "max_words": len(words(summary)) + EXTRA_WORDS}
        return Sample(self.prompt(document), summary, meta)

    def verify(
        self, prompts: Sequence[str], completions: Sequence[str], metadata: Sequence[Mapping[str, Any]]
    ) -> np.ndarray:
        return np.array([summary_score(c, m) for c, m in zip(completions, metadata)], dtype=np.float32)
