"""Observation and action spaces, and conversion of user actions into token tensors."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from gymnasium import spaces

from llm_gym.envs.problem import TextGenProblem

Granularity = Literal["token", "sequence"]


def observation_space(problem: TextGenProblem) -> spaces.Dict:
    """Fixed-shape ids and mask over the window ``P + T``: prompt left-padded, completion after it."""
    length = problem.max_prompt_tokens + problem.max_new_tokens
    return spaces.Dict(
        {
            "input_ids": spaces.Box(0, problem.vocab_size - 1, (length,), dtype=np.int64),
            "attention_mask": spaces.Box(0, 1, (length,), dtype=np.int64),
        }
    )


def action_space(problem: TextGenProblem, granularity: Granularity) -> spaces.Space:
    """``Discrete(V)`` for one token; ``MultiDiscrete([V] * T)`` for a whole completion.

    A completion is read up to and including its first EOS; what follows is ignored (pad it with
    anything in the vocabulary). Without an EOS in its ``T`` tokens the turn is truncated.
    """
    if granularity == "token":
        return spaces.Discrete(problem.vocab_size)
    if granularity == "sequence":
        return spaces.MultiDiscrete(np.full(problem.max_new_tokens, problem.vocab_size, dtype=np.int64))
    raise ValueError(f"granularity must be 'token' or 'sequence', got {granularity!r}")


def actions_to_tokens(
    problem: TextGenProblem, granularity: Granularity, actions: Any, num_envs: int, device: torch.device
) -> torch.Tensor:
    """Batch of actions -> LongTensor (N, 1) for tokens or (N, T) for completions.

    Sequence actions may also be strings (tokenised without special tokens, EOS appended) or id
    arrays shorter than ``T`` (taken as complete: EOS appended).
    """
    if granularity == "token":
        tokens = torch.as_tensor(np.asarray(actions) if not torch.is_tensor(actions) else actions, device=device)
        if tokens.numel() != num_envs or tokens.dtype.is_floating_point:
            raise ValueError(f"expected {num_envs} integer token actions, got {tuple(tokens.shape)} {tokens.dtype}")
        return tokens.long().reshape(num_envs, 1)
    T, eos, pad = problem.max_new_tokens, problem.eos_token_id, problem.pad_token_id
    if isinstance(actions, (list, tuple)) and actions and isinstance(actions[0], str):
        if len(actions) != num_envs:
            raise ValueError(f"expected {num_envs} completions, got {len(actions)}")
        ids = problem.tokenizer(list(actions), add_special_tokens=False)["input_ids"]
        unk = problem.tokenizer.unk_token_id
        for text, row in zip(actions, ids):
            if unk is not None and unk in row:
                raise ValueError(f"completion {text[:60]!r} has text the tokenizer cannot encode (unknown token)")
        rows = [(row + [eos])[:T] for row in ids]
        padded = np.full((num_envs, T), pad, dtype=np.int64)
        for r, row in enumerate(rows):
            padded[r, : len(row)] = row
        return torch.from_numpy(padded).to(device)
    tokens = torch.as_tensor(np.asarray(actions) if not torch.is_tensor(actions) else actions, device=device)
    tokens = tokens.reshape(num_envs, -1)
    if tokens.dtype.is_floating_point:
        raise ValueError(f"completion actions must be integer token ids, got {tokens.dtype}")
    if tokens.shape[1] > T:
        raise ValueError(f"completion of {tokens.shape[1]} tokens exceeds max_new_tokens={T}")
    if tokens.shape[1] < T:
        fill = torch.full((num_envs, T - tokens.shape[1]), pad, dtype=torch.long, device=device)
        fill[:, 0] = eos
        tokens = torch.cat([tokens.long(), fill], dim=1)
    return tokens.long()
