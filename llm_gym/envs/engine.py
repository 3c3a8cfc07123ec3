"""Batched episode state shared by every env view: N slots stepped together as torch tensors.

Layout of a slot (length ``P + T``): the current turn's prompt left-padded into ``[0, P)``, the
completion written from ``P`` on. A token-level step appends one token per slot, a sequence-level
step appends a whole completion (up to and including its first EOS); both go through ``append``,
so the two granularities cannot disagree. "EOS" is any of the problem's ``stop_token_ids`` (the
tokenizer's EOS and the model's other end-of-turn tokens). A turn ends at EOS (terminated) or after ``T`` tokens
(truncated; at sequence granularity the step *is* the whole response, so it terminates either way
and ``info["eos"]`` says whether it ended with EOS). Multi-turn tasks answer with ``Task.reply``; the reply is appended to the context and
the slot continues with a new turn instead of ending.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from gymnasium.utils.seeding import np_random

from llm_gym.envs.encoding import encode
from llm_gym.envs.problem import TextGenProblem
from llm_gym.models import resolve_device
from llm_gym.tasks import Sample


@dataclass
class StepOutcome:
    """What one ``append`` produced: per-slot tensors plus ``info`` dicts for slots whose turn ended."""

    reward: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    infos: dict[int, dict[str, Any]] = field(default_factory=dict)


class EpisodeEngine:
    """N text-generation episodes as tensors on ``device``; see the module docstring for the layout."""

    def __init__(
        self, problem: TextGenProblem, num_envs: int, device: str | torch.device = "cpu", truncate_at_length: bool = True
    ):
        self.problem, self.num_envs, self.device = problem, num_envs, resolve_device(device)
        self.truncate_at_length = truncate_at_length
        self.P, self.T = problem.max_prompt_tokens, problem.max_new_tokens
        shape = (num_envs, self.P + self.T)
        self.input_ids = torch.full(shape, problem.pad_token_id, dtype=torch.long, device=self.device)
        self.attention_mask = torch.zeros(shape, dtype=torch.long, device=self.device)
        self.generated = torch.zeros(num_envs, dtype=torch.long, device=self.device)
        self.stop_ids = torch.as_tensor(problem.stop_token_ids, dtype=torch.long, device=self.device)
        self.dense_score = torch.zeros(num_envs, dtype=torch.float32, device=self.device)
        self.rngs: list[np.random.Generator | None] = [None] * num_envs
        self.samples: list[Sample | None] = [None] * num_envs
        self.contexts: list[list[int]] = [[] for _ in range(num_envs)]
        self.prompt_texts: list[str] = [""] * num_envs
        self.completions: list[list[str]] = [[] for _ in range(num_envs)]

    # ----------------------------------------------------------------------------------- resets
    def seed(self, index: int, seed: int | None) -> None:
        self.rngs[index] = np_random(seed)[0]

    def reset(self, indices: list[int]) -> list[dict[str, Any]]:
        """Start new episodes in ``indices`` with prompts drawn from each slot's own generator."""
        for i in indices:
            if self.rngs[i] is None:
                self.seed(i, None)
            self.samples[i] = self.problem.task.sample(self.rngs[i], self.problem.split)
            self.completions[i] = []
        texts = [self.samples[i].prompt for i in indices]
        encoded = encode(self.problem.tokenizer, texts, f"prompt of task {self.problem.task.name!r}")
        self._write_contexts(indices, texts, encoded)
        return [{"prompt": self.prompt_texts[i], "turn": 0} for i in indices]

    def _write_contexts(self, indices: list[int], texts: list[str], token_lists: list[list[int]]) -> None:
        rows = np.full((len(indices), self.P + self.T), self.problem.pad_token_id, dtype=np.int64)
        mask = np.zeros_like(rows)
        for row, (i, text, tokens) in enumerate(zip(indices, texts, token_lists)):
            if len(tokens) > self.P:
                raise ValueError(
                    f"prompt of {len(tokens)} tokens does not fit max_prompt_tokens={self.P} "
                    f"(task {self.problem.task.name!r}, prompt {text[:80]!r}); raise max_prompt_tokens"
                )
            rows[row, self.P - len(tokens) : self.P] = tokens
            mask[row, self.P - len(tokens) : self.P] = 1
            self.contexts[i], self.prompt_texts[i] = list(tokens), text
        index = torch.as_tensor(indices, dtype=torch.long, device=self.device)
        self.input_ids[index] = torch.from_numpy(rows).to(self.device)
        self.attention_mask[index] = torch.from_numpy(mask).to(self.device)
        self.generated[index] = 0
        self.dense_score[index] = 0.0

    # ------------------------------------------------------------------------------------ steps
    def check_actions(self, tokens: torch.Tensor, active: torch.Tensor) -> None:
        bad = active[:, None] & ((tokens < 0) | (tokens >= self.problem.vocab_size))
        if bool(bad.any()):
            env, col = (int(x) for x in bad.nonzero()[0])
            raise ValueError(
                f"action {int(tokens[env, col])} (env {env}) is outside the vocabulary [0, {self.problem.vocab_size})"
            )

    def append(self, tokens: torch.Tensor, active: torch.Tensor) -> StepOutcome:
        """Append ``tokens`` (N, k) to the active slots' completions, stopping each at its first stop token."""
        self.check_actions(tokens, active)
        k = tokens.shape[1]
        is_eos = torch.isin(tokens, self.stop_ids)
        first_eos = torch.where(is_eos.any(1), is_eos.int().argmax(1), k)
        n_write = torch.minimum((first_eos + 1).clamp(max=k), self.T - self.generated)
        n_write = torch.where(active, n_write, 0)
        rows, cols = (torch.arange(k, device=self.device)[None] < n_write[:, None]).nonzero(as_tuple=True)
        positions = self.P + self.generated[rows] + cols
        self.input_ids[rows, positions] = tokens[rows, cols]
        self.attention_mask[rows, positions] = 1
        self.generated += n_write
        ended_eos = active & (first_eos < n_write)
        turn_done = ended_eos | (active & (self.generated >= self.T))
        return self._score(active, turn_done, ended_eos)

    def completion_ids(self, indices: torch.Tensor) -> list[list[int]]:
        lengths = self.generated[indices].tolist()
        return [ids[:n] for ids, n in zip(self.input_ids[indices, self.P :].tolist(), lengths)]

    def _score(self, active: torch.Tensor, turn_done: torch.Tensor, ended_eos: torch.Tensor) -> StepOutcome:
        problem = self.problem
        reward = torch.zeros(self.num_envs, dtype=torch.float32, device=self.device)
        terminated = torch.zeros_like(turn_done)
        truncated = torch.zeros_like(turn_done)
        scored = (active if problem.reward.dense else turn_done).nonzero().flatten()
        outcome = StepOutcome(reward, terminated, truncated)
        if scored.numel() == 0:
            return outcome
        idx = scored.tolist()
        completion_ids = self.completion_ids(scored)
        completions = problem.tokenizer.batch_decode(completion_ids, skip_special_tokens=True)
        prompts = [self.prompt_texts[i] for i in idx]
        metadata = [self._metadata(i) for i in idx]
        proxy = problem.reward.score(prompts, completions, metadata)
        score = torch.as_tensor(proxy.total, device=self.device)
        reward[scored] = score - self.dense_score[scored]
        self.dense_score[scored] = score

        done_flags, eos_flags = turn_done.tolist(), ended_eos.tolist()  # one transfer, not one per slot
        done_rows = [row for row, i in enumerate(idx) if done_flags[i]]
        if not done_rows:
            return outcome
        gold = None
        if problem.gold_reward is not None:
            pick = lambda xs: [xs[r] for r in done_rows]  # noqa: E731
            gold = problem.gold_reward.score(pick(prompts), pick(completions), pick(metadata)).total
        continuing: list[tuple[int, str, list[int]]] = []
        ended_terminated: list[int] = []
        ended_truncated: list[int] = []
        for n, row in enumerate(done_rows):
            i = idx[row]
            self.completions[i].append(completions[row])
            outcome.infos[i] = {
                "prompt": prompts[row],
                "completion": completions[row],
                "completion_ids": completion_ids[row],
                "reward_components": {name: float(v[row]) for name, v in proxy.components.items()},
                "turn": len(self.completions[i]) - 1,
                "eos": eos_flags[i],
                **({"gold_reward": float(gold[n])} if gold is not None else {}),
            }
            reply = problem.task.reply(self.samples[i], self.completions[i])
            if reply is not None:
                continuing.append((i, reply, completion_ids[row]))
            elif eos_flags[i] or not self.truncate_at_length:
                ended_terminated.append(i)
            else:
                ended_truncated.append(i)
        terminated[ended_terminated] = True
        truncated[ended_truncated] = True
        if continuing:
            self._continue(continuing)
        return outcome

    def _continue(self, continuing: list[tuple[int, str, list[int]]]) -> None:
        """Multi-turn: the next turn's context is the old context, the completion and the reply."""
        indices, texts, tokens = [], [], []
        replies = encode(
            self.problem.tokenizer, [reply for _, reply, _ in continuing], f"reply of task {self.problem.task.name!r}",
            add_special_tokens=False,
        )
        for (i, reply, completion), reply_ids in zip(continuing, replies):
            indices.append(i)
            texts.append(self.prompt_texts[i] + self.completions[i][-1] + reply)
            tokens.append(self.contexts[i] + completion + reply_ids)
        self._write_contexts(indices, texts, tokens)

    def _metadata(self, i: int) -> dict[str, Any]:
        sample, turn = self.samples[i], len(self.completions[i])
        return {**sample.metadata, "reference": self.problem.task.reference(sample, turn), "turn": turn}

    def observation(self) -> dict[str, torch.Tensor]:
        return {"input_ids": self.input_ids.clone(), "attention_mask": self.attention_mask.clone()}
