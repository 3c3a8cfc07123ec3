"""Dialogue (chat bot): a multi-turn shop conversation with a scripted customer, or chat ``messages`` files.

The policy is the shop assistant. Each episode shows the shop's stock and a customer who has a
hidden list of 2-3 questions and asks them one per turn (``Task.reply``): prices of stocked items
and whether an item is stocked. The seed's dialogue reward is split into the components in
``llm_gym.rewards.dialogue``: *informativeness* (the requested facts are stated, no wrong ones),
*relevance* (the answer is about the item asked, not others) and *fluency* (a format/grammar
check, or a small local LM's likelihood). Each turn's facts, topic and reference answer live in
``metadata["turns"][metadata["turn"]]``, the turn index the engine passes with every score.

The word-level checks behind the gold verifier and the rewards live in ``llm_gym.scoring``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from transformers import PreTrainedTokenizerBase

from llm_gym.models import load_tokenizer, train_tokenizer
from llm_gym.scoring import (
    STOPWORDS,
    content_words,
    current_turn,
    format_fluency,
    informativeness,
    is_claim,
    relevance,
    words,
)
from llm_gym.tasks.base import Sample, Split
from llm_gym.tasks.family import FamilyTask
from llm_gym.tasks.files import DatasetError, chat_prompt, require_field

# -------------------------------------------------------------------------------------- dialogue
ITEMS = ("tea", "jam", "milk", "rice", "soap", "salt", "bread", "eggs")


def _turn(question: str, answer: str, facts: list[str], topic: str | None = None) -> dict[str, Any]:
    return {"question": question, "answer": answer, "facts": facts, "topic": topic}


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
    prompt_without_answers = 120  # that worst case less its two answers: the shop line, questions and cues
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

    def window(self, tokenizer: PreTrainedTokenizerBase, max_new_tokens: int | None = None) -> tuple[int, int]:
        """The class window for 20-token answers; longer answers widen the prompt by the earlier turns' answers."""
        new = max_new_tokens or self.max_new_tokens
        return max(self.max_prompt_tokens, self.prompt_without_answers + (self.max_turns - 1) * new), new

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
            source = self.tokenizer_source
            self._chat_tokenizer = load_tokenizer(source) if source is not None else train_tokenizer(rows_text)
        return self._chat_tokenizer

    def row_to_sample(self, row: Mapping[str, Any], where: str) -> Sample:
        messages = require_field(row, "messages", where, self.data_format)
        if not isinstance(messages, list) or not messages:
            raise DatasetError(f"{where}: field 'messages' must be a non-empty list (format 'messages')")
        tokenizer = self.chat_tokenizer([str(m.get("content", "")) for m in messages if isinstance(m, Mapping)])
        ends = [k for k, m in enumerate(messages) if isinstance(m, Mapping) and m.get("role") == "assistant"]
        if not ends:
            raise DatasetError(f"{where}: 'messages' has no assistant message (format 'messages')")
        turns = []
        for n, end in enumerate(ends):
            prompt, answer = chat_prompt(messages[: end + 1], where, tokenizer)
            since = ends[n - 1] + 1 if n else 0
            question = " ".join(str(m["content"]) for m in messages[since:end] if m.get("role") == "user")
            facts = [w for w in words(answer) if w not in STOPWORDS or is_claim(w)]
            turns.append(_turn(question, answer, list(dict.fromkeys(facts)), None))
            turns[-1]["topic_words"] = [w for w in content_words(question) if w in facts]
            if n == 0:
                first_prompt = prompt
            else:  # the text between the previous assistant message and this turn's answer
                previous = chat_prompt(messages[: ends[n - 1] + 1], where, tokenizer)[0] + turns[n - 1]["answer"]
                if not prompt.startswith(previous):
                    raise DatasetError(
                        f"{where}: the chat template does not render turn {n} as a continuation of turn {n - 1}; "
                        "multi-turn replay needs a prefix-stable template"
                    )
                turns[n - 1]["reply"] = prompt[len(previous) :]
        turns[-1]["reply"] = None
        extra = {k: v for k, v in row.items() if k != "messages"}
        return Sample(first_prompt, turns[0]["answer"], {**extra, "turns": turns, "turn": 0},
                      messages=tuple(messages[: ends[0]]))

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
