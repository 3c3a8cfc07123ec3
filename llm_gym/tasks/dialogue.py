"""Dialogue (chat bot): a multi-turn shop conversation with a scripted customer, or chat ``messages`` files.

The policy is the shop assistant. Each episode shows the shop's stock and a customer who has a
hidden list of 2-3 questions and asks them one per turn (``Task.reply``): prices of stocked items
and whether an item is stocked. The seed's dialogue reward is split into the components in
``llm_gym.rewards.dialogue``: *informativeness* (the requested facts are stated, no wrong ones),
*relevance* (the answer is about the item asked, not others) and *fluency* (a format/grammar
check, or a small local LM's likelihood). Each turn's facts, topic and reference answer live in
``metadata["turns"][metadata["turn"]]``, the turn index the engine passes with every score.

This module also holds what the family tasks share: ``FamilyTask`` (a procedural generator whose
samples can be replaced by JSONL rows, read with the dataset loader's parser and error style) and
the word-level checks behind the rewards.
"""

from __future__ import annotations

import re
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from transformers import PreTrainedTokenizerBase

from llm_gym.tasks import register_task
from llm_gym.tasks.base import Sample, Split, Task
from llm_gym.tasks.datasets import DatasetError, DatasetTask, _chat_prompt, _field, _jsonl_rows

_WORD = re.compile(r"[a-z0-9]+")
_CLAIMS = re.compile(r"^(\d+|yes|no)$")
_STOPWORDS = frozenset(
    "a an and are as at be but by do does for from has have how i in is it its me my no not of on or so "
    "that the their there they this to was we what when where which who why will with you your yes any".split()
)


# ----------------------------------------------------------------------------------- text checks
def words(text: str) -> list[str]:
    """Lower-case alphanumeric words: the unit every check here counts in."""
    return _WORD.findall(text.lower())


def content_words(text: str) -> list[str]:
    """Words that carry content (not stopwords), in order, without repeats."""
    return list(dict.fromkeys(w for w in words(text) if w not in _STOPWORDS))


def fact_coverage(text: str, facts: Sequence[str]) -> float:
    """Fraction of ``facts`` (words or phrases) that appear in ``text`` as whole words."""
    if not facts:
        return 1.0
    padded = f" {' '.join(words(text))} "
    return sum(f" {' '.join(words(fact))} " in padded for fact in facts) / len(facts)


def claim_precision(text: str, facts: Sequence[str]) -> float:
    """Of the checkable claims in ``text`` (numbers, yes/no), the fraction that are facts (1 if none)."""
    claims = [w for w in words(text) if _CLAIMS.match(w)]
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


# ------------------------------------------------------------------------------ family base task
class FamilyTask(Task):
    """A procedural task whose samples can come from JSONL files instead (``data_files=``).

    Why one base: every family keeps its own prompt format, verifier and rewards whether samples
    are generated or loaded, and file handling (parsing, ``file line N`` errors, the train/test
    split) is the dataset loader's, so there is one JSONL parser in the project.
    """

    data_format: ClassVar[str] = ""

    def __init__(
        self,
        data_files: str | Path | Sequence[str | Path] | None = None,
        test_files: str | Path | Sequence[str | Path] | None = None,
        test_fraction: float = 0.1,
    ):
        self.data: DatasetTask | None = None
        if data_files is None and test_files is not None:
            raise ValueError(f"{self.name}: test_files given without data_files")
        if data_files is not None:
            train = self.load(data_files)
            test = self.load(test_files) if test_files is not None else None
            self.data = DatasetTask(train, test, test_fraction=test_fraction)

    def load(self, files: str | Path | Sequence[str | Path]) -> list[Sample]:
        """Samples from JSONL files, one row each, through ``row_to_sample``."""
        paths = [Path(files)] if isinstance(files, (str, Path)) else [Path(f) for f in files]
        samples = []
        for path in paths:
            if not path.is_file():
                raise FileNotFoundError(f"{self.name} data file not found: {path}")
            for where, row in _jsonl_rows(path):
                if not isinstance(row, Mapping):
                    raise DatasetError(f"{where}: row must be a JSON object, got {type(row).__name__}")
                samples.append(self.row_to_sample(row, where))
        if not samples:
            raise DatasetError(f"{', '.join(map(str, paths))}: the dataset is empty")
        return samples

    @abstractmethod
    def row_to_sample(self, row: Mapping[str, Any], where: str) -> Sample:
        """One JSONL row as a sample; errors start with ``where`` (``file line N``)."""

    def sample(self, rng: np.random.Generator, split: Split = "train") -> Sample:
        return self.data.sample(rng, split) if self.data is not None else super().sample(rng, split)


# -------------------------------------------------------------------------------------- dialogue
ITEMS = ("tea", "jam", "milk", "rice", "soap", "salt", "bread", "eggs")


def _turn(question: str, answer: str, facts: list[str], topic: str | None = None) -> dict[str, Any]:
    return {"question": question, "answer": answer, "facts": facts, "topic": topic}


@register_task
class Dialogue(FamilyTask):
    """Shop assistant, 2-3 turns: ``shop: tea 4, jam 7, rice 2.\\nuser: price of jam?\\nbot: `` -> ``jam is 7.``

    The customer then asks the next hidden question (``\\nuser: any milk?\\nbot: `` -> ``no milk,
    sorry.``). Gold: informativeness x relevance x format fluency of the turn's answer (1 for the
    reference). ``dataset()`` expands every conversation into one sample per assistant turn, the
    earlier turns answered by the reference: the rows SFT trains on and offline evaluation scores.
    Files: chat ``messages`` JSONL (``data_files=``; rendered with ``tokenizer``'s chat template,
    a char tokenizer with the built-in template when not given); the user turns of a row are the
    scripted partner's lines, its assistant turns the references.
    """

    name = "dialogue"
    description = "multi-turn shop assistant vs a scripted customer; gold: informativeness*relevance*fluency"
    default_reward = "0.5*informativeness + 0.3*relevance + 0.2*fluency"
    max_prompt_tokens = 160  # worst case: 3 turns whose first two answers use all 20 tokens
    max_new_tokens = 20
    data_format = "messages"

    def __init__(
        self,
        min_turns: int = 2,
        max_turns: int = 3,
        tokenizer: str | Path | PreTrainedTokenizerBase | None = None,
        **data_kwargs: Any,
    ):
        if not 1 <= min_turns <= max_turns <= 3:
            raise ValueError(f"dialogue needs 1 <= min_turns <= max_turns <= 3, got {min_turns}, {max_turns}")
        self.min_turns, self.max_turns = min_turns, max_turns
        self.tokenizer_source = tokenizer
        self._chat_tokenizer: PreTrainedTokenizerBase | None = None
        super().__init__(**data_kwargs)

    # ---- procedural conversations
    def generate(self, rng: np.random.Generator) -> Sample:
        items = [ITEMS[i] for i in rng.permutation(len(ITEMS))]
        stock, absent = items[:3], items[3:]
        prices = {item: int(p) for item, p in zip(stock, rng.integers(1, 10, size=3))}
        n_turns = int(rng.integers(self.min_turns, self.max_turns + 1))
        turns = []
        asked = rng.permutation(len(stock))
        for k in range(n_turns):
            kind = int(rng.integers(3))
            if kind == 2:
                item = absent[k]
                turns.append(_turn(f"any {item}?", f"no {item}, sorry.", ["no"], item))
            else:
                item = stock[int(asked[k])]
                price = prices[item]
                if kind == 0:
                    turns.append(_turn(f"price of {item}?", f"{item} is {price}.", [str(price)], item))
                else:
                    turns.append(_turn(f"any {item}?", f"yes, {item} is {price}.", ["yes", str(price)], item))
        for k, turn in enumerate(turns):
            turn["reply"] = f"\nuser: {turns[k + 1]['question']}\nbot: " if k + 1 < len(turns) else None
        menu = ", ".join(f"{item} {prices[item]}" for item in stock)
        prompt = f"shop: {menu}.\nuser: {turns[0]['question']}\nbot: "
        return Sample(prompt, turns[0]["answer"], {"turns": turns, "items": list(ITEMS), "turn": 0})

    # ---- chat files
    def chat_tokenizer(self, rows_text: Sequence[str] = ()) -> PreTrainedTokenizerBase:
        if self._chat_tokenizer is None:
            from llm_gym.models import load_tokenizer, train_tokenizer

            source = self.tokenizer_source
            self._chat_tokenizer = load_tokenizer(source) if source is not None else train_tokenizer(rows_text)
        return self._chat_tokenizer

    def row_to_sample(self, row: Mapping[str, Any], where: str) -> Sample:
        messages = _field(row, "messages", where, self.data_format)
        if not isinstance(messages, list) or not messages:
            raise DatasetError(f"{where}: field 'messages' must be a non-empty list (format 'messages')")
        tokenizer = self.chat_tokenizer([str(m.get("content", "")) for m in messages if isinstance(m, Mapping)])
        ends = [k for k, m in enumerate(messages) if isinstance(m, Mapping) and m.get("role") == "assistant"]
        if not ends:
            raise DatasetError(f"{where}: 'messages' has no assistant message (format 'messages')")
        turns = []
        for n, end in enumerate(ends):
            prompt, answer = _chat_prompt(messages[: end + 1], where, tokenizer)
            since = ends[n - 1] + 1 if n else 0
            question = " ".join(str(m["content"]) for m in messages[since:end] if m.get("role") == "user")
            facts = [w for w in words(answer) if w not in _STOPWORDS or _CLAIMS.match(w)]
            turns.append(_turn(question, answer, list(dict.fromkeys(facts)), None))
            turns[-1]["topic_words"] = [w for w in content_words(question) if w in facts]
            if n == 0:
                first_prompt = prompt
            else:  # the text between the previous assistant message and this turn's answer
                previous = _chat_prompt(messages[: ends[n - 1] + 1], where, tokenizer)[0] + turns[n - 1]["answer"]
                if not prompt.startswith(previous):
                    raise DatasetError(
                        f"{where}: the chat template does not render turn {n} as a continuation of turn {n - 1}; "
                        "multi-turn replay needs a prefix-stable template"
                    )
                turns[n - 1]["reply"] = prompt[len(previous) :]
        turns[-1]["reply"] = None
        extra = {k: v for k, v in row.items() if k != "messages"}
        return Sample(first_prompt, turns[0]["answer"], {**extra, "turns": turns, "turn": 0})

    # ---- episode mechanics
    def reference(self, sample: Sample, turn: int) -> str:
        turns = sample.metadata.get("turns")
        return turns[turn]["answer"] if turns and turn < len(turns) else sample.reference

    def reply(self, sample: Sample, completions: Sequence[str]) -> str | None:
        turns = sample.metadata["turns"]
        return turns[len(completions) - 1]["reply"] if len(completions) <= len(turns) else None

    def dataset(self, split: Split, size: int, seed: int = 0) -> list[Sample]:
        """``size`` per-turn samples: context with the reference answers so far -> this turn's answer."""
        rng = np.random.default_rng(seed)
        rows: list[Sample] = []
        while len(rows) < size:
            conversation = self.sample(rng, split)
            prompt = conversation.prompt
            for k, turn in enumerate(conversation.metadata["turns"]):
                rows.append(Sample(prompt, turn["answer"], {**conversation.metadata, "turn": k}))
                if turn["reply"] is None or len(rows) == size:
                    break
                prompt += turn["answer"] + turn["reply"]
        return rows

    def verify(
        self, prompts: Sequence[str], completions: Sequence[str], metadata: Sequence[Mapping[str, Any]]
    ) -> np.ndarray:
        turns = [current_turn(m) for m in metadata]
        return np.array(
            [
                informativeness(c, t) * relevance(c, t, m.get("items", ())) * format_fluency(c)
                for c, t, m in zip(completions, turns, metadata)
            ],
            dtype=np.float32,
        )


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
