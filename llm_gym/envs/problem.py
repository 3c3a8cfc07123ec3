"""The definition every env view shares: task, tokenizer, proxy and gold reward, window sizes."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizerBase

from llm_gym.models import load_tokenizer, train_tokenizer
from llm_gym.rewards import RewardModel, RewardSpec, make_reward
from llm_gym.tasks import Split, Task, make_task


@lru_cache(maxsize=32)
def default_tokenizer(task_name: str, task_kwargs: tuple = ()) -> PreTrainedTokenizerBase:
    """A character tokenizer covering a procedural task's text, so ``gymnasium.make`` works offline."""
    task = make_task(task_name, **dict(task_kwargs))
    samples = task.dataset("train", 2000, seed=0) + task.dataset("test", 200, seed=0)
    return train_tokenizer([s.prompt + s.reference for s in samples], kind="char")


class TextGenProblem:
    """Resolves an env's keyword arguments once, for the token, sequence and vector views alike.

    ``reward`` is the optimised (proxy) reward, ``gold_reward`` the one we trust and only report;
    both accept any reward spec (see ``llm_gym.rewards.registry``). By default the proxy is the
    task's ``default_reward`` and the gold is the task's verifier.
    """

    def __init__(
        self,
        task: str | Task = "arithmetic",
        tokenizer: str | Path | PreTrainedTokenizerBase | None = None,
        reward: RewardSpec = None,
        gold_reward: RewardSpec = "verifier",
        max_prompt_tokens: int | None = None,
        max_new_tokens: int | None = None,
        split: Split = "train",
        task_kwargs: dict[str, Any] | None = None,
    ):
        task_kwargs = dict(task_kwargs or {})
        self.task = make_task(task, **task_kwargs)
        if tokenizer is None:
            if not isinstance(task, str):
                raise ValueError("a Task instance needs an explicit tokenizer (a path or tokenizer object)")
            tokenizer = default_tokenizer(task, tuple(sorted(task_kwargs.items())))
        self.tokenizer = load_tokenizer(tokenizer)
        self.reward: RewardModel = make_reward(reward if reward is not None else self.task.default_reward, self.task)
        self.gold_reward: RewardModel | None = make_reward(gold_reward, self.task)
        self.max_prompt_tokens = max_prompt_tokens or self.task.max_prompt_tokens
        self.max_new_tokens = max_new_tokens or self.task.max_new_tokens
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        self.split: Split = split
        self.vocab_size = len(self.tokenizer)
        self.eos_token_id: int = self.tokenizer.eos_token_id
        self.pad_token_id: int = self.tokenizer.pad_token_id
