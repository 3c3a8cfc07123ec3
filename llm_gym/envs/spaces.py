"""Observation and action spaces, and conversion of user actions into token tensors."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from gymnasium import spaces

from llm_gym.envs.encoding import encode
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
    anything in the vocabulary). Without an EOS in its ``T`` tokens the turn ends all the same: the
    step terminates it, with ``info["eos"]`` False.
    """
    if granularity == "token":
        return spaces.Discrete(problem.vocab_size)
    if granularity == "sequence":
        return spaces.MultiDiscrete(np.full(problem.max_new_tokens, problem.vocab_size, dtype=np.int64))
    raise ValueError(f"granularity must be 'token' or 'sequence', got {granularity!r}")


def _as_id_tensor(actions: Any, problem: TextGenProblem, granularity: Granularity, num_envs: int, device) -> torch.Tensor:
    """Integer token ids as a tensor, or a ``ValueError`` that names the expected action space."""
    if torch.is_tensor(actions):
        integer = not (actions.dtype.is_floating_point or actions.dtype.is_complex or actions.dtype == torch.bool)
        dtype = actions.dtype
    else:
        try:
            array = np.asarray(actions)
            integer, dtype = array.dtype.kind in "iu", array.dtype
        except (TypeError, ValueError) as error:  # ragged nested lists
            integer, dtype = False, f"unusable ({error})"
    if not integer:
        space = action_space(problem, granularity)
        also = " or a string" if granularity == "sequence" else ""
        batch = f"a batch of {num_envs} actions, each " if num_envs > 1 else ""
        raise ValueError(
            f"{granularity}-level action must be {batch}integer token ids in {space}{also}; got "
            f"{type(actions).__name__} {str(actions)[:60]!r} (dtype {dtype})"
        )
    return (actions if torch.is_tensor(actions) else torch.from_numpy(array)).to(device)


def _too_long(length: int, T: int, what: str) -> ValueError:
    return ValueError(
        f"completion of {length} tokens exceeds max_new_tokens={T}{what}; a completion is at most "
        "max_new_tokens ids, EOS included when it ends one"
    )


def actions_to_tokens(
    problem: TextGenProblem, granularity: Granularity, actions: Any, num_envs: int, device: torch.device,
    single: bool = False,
) -> torch.Tensor:
    """Batch of actions -> LongTensor (N, 1) for tokens or (N, T) for completions.

    Sequence actions may also be strings (tokenised without special tokens) or id arrays shorter
    than ``T``; both are read the same way: a completion shorter than ``T`` gets EOS appended
    (it is complete), one of exactly ``T`` is taken as written, a longer one is an error. ``single``:
    the action of a single env, so a sequence action is one completion, ids of shape ``(k,)``.
    """
    if granularity == "token":
        tokens = _as_id_tensor(actions, problem, granularity, num_envs, device)
        if tokens.numel() != num_envs:
            raise ValueError(
                f"expected {num_envs} token action(s) in {action_space(problem, granularity)}, got shape {tuple(tokens.shape)}"
            )
        return tokens.long().reshape(num_envs, 1)
    T, eos, pad = problem.max_new_tokens, problem.eos_token_id, problem.pad_token_id
    if isinstance(actions, (list, tuple)) and actions and all(isinstance(a, str) for a in actions):
        if len(actions) != num_envs:
            raise ValueError(f"expected {num_envs} completions, got {len(actions)}")
        rows = encode(problem.tokenizer, actions, "completion", add_special_tokens=False)
        padded = np.full((num_envs, T), pad, dtype=np.int64)
        for env, (text, row) in enumerate(zip(actions, rows)):
            if len(row) > T:
                raise _too_long(len(row), T, f" (env {env}: {text[:40]!r})")
            row = row + [eos] if len(row) < T else row
            padded[env, : len(row)] = row
        return torch.from_numpy(padded).to(device)
    tokens = _as_id_tensor(actions, problem, granularity, num_envs, device).long()
    if single and tokens.dim() > 1:
        raise ValueError(f"a sequence-level action is one completion, token ids of shape (k,) with k <= {T} "
                         f"(or a string); got shape {tuple(tokens.shape)}")
    if tokens.numel() % num_envs or (num_envs > 1 and (tokens.dim() != 2 or tokens.shape[0] != num_envs)):
        raise ValueError(f"expected {num_envs} completion(s) of token ids, got shape {tuple(tokens.shape)}")
    tokens = tokens.reshape(num_envs, tokens.numel() // num_envs)
    if tokens.shape[1] > T:
        raise _too_long(tokens.shape[1], T, "")
    if tokens.shape[1] < T:
        fill = torch.full((num_envs, T - tokens.shape[1]), pad, dtype=torch.long, device=device)
        fill[:, 0] = eos
        tokens = torch.cat([tokens, fill], dim=1)
    return tokens
