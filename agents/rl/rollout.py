"""The batched vector env as the trainers' only source of prompts and rewards.

Why go through the env instead of reading the task directly: the env is what users benchmark, so
prompts, the proxy reward, the gold reward and the EOS rule are exactly the ones every other
agent (SB3 at token level included) sees. We use the sequence-granularity vector env: one
``reset`` lays out B prompts, the sampler writes B completions, one ``step`` scores them all in a
single reward-model call.

Each rollout calls ``reset`` with explicit per-slot seeds that are a pure function of (run seed,
iteration, process): a resumed run then sees exactly the prompts the uninterrupted run saw without
any env RNG state in the checkpoint. Because every rollout starts with that reset, the autoreset
mode is irrelevant; we keep the default NEXT_STEP, which does no wasted reset inside ``step``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, PreTrainedTokenizerBase

import llm_gym  # noqa: F401  (registers the llm_gym/* env ids)
from agents.rl.policy import check_same_tokenizer
from agents.rl.sampling import Completions, sample_completions, trim_left_padding
from llm_gym.models import load_tokenizer


@dataclass
class Rollout:
    """B sampled completions with their prompts and the env's scores (tensors on the policy's device)."""

    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    completions: Completions
    score: torch.Tensor  # proxy reward, the one optimised
    gold: torch.Tensor  # gold reward, only reported (nan when the env has none)
    texts: list[str]  # the decoded completions
    prompts: list[str]  # the prompt texts
    metadata: list[dict[str, Any]]  # each sample's task metadata (what rewards and verifiers read)


def iteration_seeds(seed: int, iteration: int, rank: int, num_prompts: int, group_size: int = 1) -> list[int]:
    """Env slot seeds for one rollout: ``group_size`` consecutive slots share a seed, hence a prompt."""
    base = (seed * 1_000_003 + iteration * 7_919 + rank * 104_729) * num_prompts
    return [base + i // group_size for i in range(num_prompts * group_size)]


class RolloutEnv:
    """``make_vec(env_id, granularity="sequence")`` with the policy's tokenizer, plus sampling helpers."""

    def __init__(self, env_id: str, num_envs: int, device: torch.device, tokenizer: PreTrainedTokenizerBase,
                 tokenizer_dir: str | Path, env_kwargs: dict[str, Any] | None = None):
        kwargs = dict(env_kwargs or {})
        if kwargs.get("tokenizer") is not None:
            check_same_tokenizer(tokenizer, load_tokenizer(kwargs["tokenizer"]), "policy", "env")
        kwargs["tokenizer"] = str(tokenizer_dir)
        kwargs.pop("granularity", None)
        self.env = gymnasium.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point",
                                      granularity="sequence", device=device, **kwargs)
        self.num_envs, self.device = num_envs, device
        self.T = int(self.env.single_action_space.shape[0])
        self.P = int(self.env.single_observation_space["input_ids"].shape[0]) - self.T
        self.pad_token_id = tokenizer.pad_token_id
        self.stop_token_ids = self.env.unwrapped.problem.stop_token_ids  # the env's end-of-turn rule, not only EOS
        self.vocab_size = self.env.unwrapped.problem.vocab_size  # the valid actions: the tokenizer's ids

    def prompts(self, seeds: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        obs, _ = self.env.reset(seed=seeds)
        # the env pads to its fixed window; every forward of this batch only needs its longest prompt
        return trim_left_padding(obs["input_ids"][:, : self.P].to(self.device),
                                 obs["attention_mask"][:, : self.P].to(self.device))

    def references(self) -> list[str]:
        """The task's reference completions for the current prompts (for perplexity in ``evaluate``)."""
        return [sample.reference for sample in self.env.unwrapped.engine.samples]

    def metadata(self) -> list[dict[str, Any]]:
        """The task metadata of the current prompts, with the reference answer as the env's rewards see it
        (``reference``), so callbacks and stored rollouts can be scored by reference-based rewards too."""
        task = self.env.unwrapped.problem.task
        return [{**sample.metadata, "reference": task.reference(sample, 0)} for sample in self.env.unwrapped.engine.samples]

    def score(self, completion_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[str], list[str]]:
        """Step all slots with their completions: proxy reward, gold reward (nan if none), completion and
        prompt texts."""
        actions = F.pad(completion_ids, (0, self.T - completion_ids.shape[1]), value=self.pad_token_id)
        _, reward, terminated, truncated, info = self.env.step(actions)
        if not bool((terminated | truncated).all()):
            raise ValueError("multi-turn tasks are not supported by the sequence-level trainers: a turn did not end the episode")
        gold = info.get("gold_reward", np.full(self.num_envs, np.nan))
        return (torch.as_tensor(reward, dtype=torch.float32, device=self.device),
                torch.as_tensor(np.asarray(gold, dtype=np.float32), device=self.device),
                list(self.env.unwrapped.turn_completions), list(self.env.unwrapped.turn_prompts))

    def rollout(self, model: PreTrainedModel, seeds: list[int], temperature: float, top_k: int,
                generator: torch.Generator | None, compile: bool = False) -> Rollout:
        prompt_ids, prompt_mask = self.prompts(seeds)
        completions = sample_completions(model, prompt_ids, prompt_mask, self.T, self.stop_token_ids,
                                         self.pad_token_id, temperature, top_k, generator, self.vocab_size, compile)
        metadata = self.metadata()
        score, gold, texts, prompts = self.score(completions.ids)
        return Rollout(prompt_ids, prompt_mask, completions, score, gold, texts, prompts, metadata)

    def close(self) -> None:
        self.env.close()
