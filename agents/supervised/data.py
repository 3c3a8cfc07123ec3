"""Tokenisation and batching shared by SFT, feedback sampling and reward-model training.

Why one module: the policy is trained, sampled and scored on token ids that must be *exactly* the
ones the envs produce. An env encodes a prompt with ``llm_gym.tokenization.encode_prompts`` (the
tokenizer's special tokens, e.g. BOS, but never a second BOS after a chat template's own) and ends
a turn at any stop token; so SFT encodes ``encode_prompts(prompt) + encode_completions(completion)
+ [EOS]`` and learns only the completion part, and a reward model sees
``encode_prompts(reward_model_text(prompt, completion))`` exactly as ``LearnedReward`` does.
Batches are padded to their own longest row, not to a global maximum.

Over-long rows: an SFT row longer than ``max_length`` is *dropped* (cutting it would remove the
answer or its EOS and teach the policy not to stop); a reward-model text is *truncated from the
left* (the completion being judged is kept, as ``LearnedReward`` does at scoring time). Both are
counted and the trainers log the counts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from agents.rl.sampling import sample_completions
from llm_gym.envs import TextGenProblem
from llm_gym.rewards import reward_model_text
from llm_gym.tasks import Sample
from llm_gym.tokenization import encode_completions, encode_prompts, stop_token_ids

IGNORE_INDEX = -100


# ----------------------------------------------------------------------------------- SFT rows
def prompt_ids(tokenizer: PreTrainedTokenizerBase, prompt: str) -> list[int]:
    """Token ids of a prompt exactly as the envs encode it (special tokens included, one BOS at most)."""
    return encode_prompts(tokenizer, [prompt])[0]


def encode_sft(
    tokenizer: PreTrainedTokenizerBase, prompt: str, completion: str, max_length: int
) -> dict[str, list[int]] | None:
    """``input_ids`` and ``labels`` (prompt masked with -100) for one row, or None if it exceeds ``max_length``."""
    head = prompt_ids(tokenizer, prompt)
    tail = encode_completions(tokenizer, [completion])[0] + [tokenizer.eos_token_id]
    if len(head) + len(tail) > max_length:
        return None
    return {"input_ids": head + tail, "labels": [IGNORE_INDEX] * len(head) + tail}


def encode_sft_rows(
    tokenizer: PreTrainedTokenizerBase, rows: Sequence[tuple[str, str]], max_length: int, what: str = "SFT data"
) -> tuple[list[dict[str, list[int]]], int]:
    """Encode (prompt, completion) rows; returns the examples and how many were dropped as too long."""
    if not rows:
        raise ValueError(f"{what} is empty: no (prompt, completion) rows to train on")
    encoded = [encode_sft(tokenizer, p, c, max_length) for p, c in rows]
    kept = [e for e in encoded if e is not None]
    if not kept:
        raise ValueError(f"every row of {what} is longer than max_length={max_length} tokens; raise max_length")
    return kept, len(rows) - len(kept)


def pad_right(sequences: Sequence[Sequence[int]], value: int) -> torch.Tensor:
    """(B, longest) int64 tensor, each row right-padded with ``value``."""
    longest = max(len(s) for s in sequences)
    out = torch.full((len(sequences), longest), value, dtype=torch.long)
    for row, seq in enumerate(sequences):
        out[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
    return out


def pad_left(sequences: Sequence[Sequence[int]], value: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention_mask), left-padded to the longest row: the layout generation continues from."""
    longest = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), longest), value, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, seq in enumerate(sequences):
        if seq:
            ids[row, longest - len(seq) :] = torch.as_tensor(seq, dtype=torch.long)
            mask[row, longest - len(seq) :] = 1
    return ids, mask


@dataclass
class SFTCollator:
    """Pads a list of ``encode_sft`` examples to the batch's longest row (labels padded with -100)."""

    pad_token_id: int

    def __call__(self, examples: Sequence[Mapping[str, list[int]]]) -> dict[str, torch.Tensor]:
        ids = [e["input_ids"] for e in examples]
        input_ids = pad_right(ids, self.pad_token_id)
        attention_mask = pad_right([[1] * len(s) for s in ids], 0)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": pad_right([e["labels"] for e in examples], IGNORE_INDEX)}


def save_in_memory_data(config: Any, out_dir: Path, fields: Sequence[str]) -> Any:
    """``config`` with every ``datasets.Dataset``/``DatasetDict`` among ``fields`` written under
    ``out_dir/data/<field>`` (``save_to_disk``) and replaced by that path, so the saved config
    reproduces the run; path fields pass through."""
    changes = {}
    for name in fields:
        value = getattr(config, name)
        if hasattr(value, "column_names"):
            path = (out_dir / "data" / name).resolve()
            value.save_to_disk(str(path))
            changes[name] = str(path)
    return dataclasses.replace(config, **changes) if changes else config


def encode_reward_text(
    tokenizer: PreTrainedTokenizerBase, prompt: str, completion: str, max_length: int
) -> tuple[list[int], bool]:
    """Ids of the text ``LearnedReward`` scores, truncated from the left to ``max_length``; and whether it was cut."""
    ids = encode_prompts(tokenizer, [reward_model_text(prompt, completion)])[0]
    return ids[-max_length:], len(ids) > max_length


@dataclass
class RewardCollator:
    """Right-pads reward-model rows (``input_ids`` lists) plus any per-row float fields into a batch.

    Pair batches hold the chosen rows in ``chosen_ids`` and the rejected rows in ``rejected_ids``;
    both are stacked into one forward pass of 2B rows (chosen first).
    """

    pad_token_id: int

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        if "chosen_ids" in rows[0]:
            ids = [r["chosen_ids"] for r in rows] + [r["rejected_ids"] for r in rows]
            extra = {"margin": torch.tensor([r["margin"] for r in rows], dtype=torch.float32)}
        else:
            ids = [r["input_ids"] for r in rows]
            extra = {"label": torch.tensor([r["label"] for r in rows], dtype=torch.float32)}
        batch = {"input_ids": pad_right(ids, self.pad_token_id), "attention_mask": pad_right([[1] * len(s) for s in ids], 0)}
        return batch | extra


# ---------------------------------------------------------------------------------- sampling
def env_problem(env_id: str, env_kwargs: Mapping[str, Any], tokenizer: PreTrainedTokenizerBase) -> TextGenProblem:
    """The task, gold reward and window sizes of ``gymnasium.make(env_id, tokenizer=tokenizer, **env_kwargs)``.

    Why through the env: SFT rows, feedback prompts and the simulated person's judgement then come
    from exactly the task and gold reward the RL stage will use with the same ``env_id``/``env_kwargs``.
    """
    return gymnasium.make(env_id, **{"tokenizer": tokenizer, **env_kwargs}).unwrapped.problem


def sample_metadata(sample: Sample) -> dict[str, Any]:
    """The metadata a reward model gets for ``sample``: what an env passes (``reference`` included)."""
    return {**sample.metadata, "reference": sample.reference}


@torch.no_grad()
def generate_completions(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    max_new_tokens: int,
    batch_size: int = 64,
    temperature: float = 0.0,
    top_k: int = 0,
    num_return_sequences: int = 1,
    generator: torch.Generator | None = None,
) -> list[str]:
    """Greedy (``temperature=0``) or sampled completions through the KV-cache sampler, decoded like the envs.

    Returns ``len(prompts) * num_return_sequences`` strings, the k samples of a prompt adjacent.
    Prompts are encoded with ``prompt_ids`` and left-padded as in an env; decoding stops at any of
    the model's stop tokens and drops special tokens, as an episode's ``info["completion"]`` does.
    """
    device = next(model.parameters()).device
    stop = stop_token_ids(tokenizer, model.generation_config)
    was_training = model.training
    model.eval()
    out: list[str] = []
    for start in range(0, len(prompts), batch_size):
        chunk = [prompt_ids(tokenizer, p) for p in prompts[start : start + batch_size] for _ in range(num_return_sequences)]
        ids, mask = pad_left(chunk, tokenizer.pad_token_id)
        completions = sample_completions(
            model,
            ids.to(device),
            mask.to(device),
            max_new_tokens=max_new_tokens,
            eos_token_id=stop,
            pad_token_id=tokenizer.pad_token_id,
            temperature=temperature,
            top_k=top_k,
            generator=generator,
            vocab_size=len(tokenizer),
        )
        out.extend(tokenizer.batch_decode(completions.ids, skip_special_tokens=True))  # pad after EOS
    model.train(was_training)
    return out
