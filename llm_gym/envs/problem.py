"""The definition every env view shares: task, tokenizer, proxy and gold reward, window sizes."""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral
from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizerBase

from llm_gym.models import load_tokenizer
from llm_gym.rewards import CompositeReward, LearnedReward, NormalizedReward, RewardModel, RewardSpec, make_reward
from llm_gym.tasks import Split, Task, make_task, task_options
from llm_gym.tokenization import check_reads_special_tokens, stop_token_ids


PROBLEM_OPTIONS = (
    "task", "tokenizer", "reward", "gold_reward", "max_prompt_tokens", "max_new_tokens", "split", "task_kwargs"
)


class TextGenProblem:
    """Resolves an env's keyword arguments once, for the token, sequence and vector views alike.

    ``reward`` is the optimised (proxy) reward, ``gold_reward`` the one we trust and only report;
    both accept any reward spec (see ``llm_gym.rewards.registry``). By default the proxy is the
    task's ``default_reward`` and the gold is the task's verifier. Task options come as
    ``task_kwargs={...}`` or as further keyword arguments (``gymnasium.make("llm_gym/Dataset-v0",
    data_files=...)``); a task that takes a ``tokenizer`` option (chat templates) gets the env's
    tokenizer unless given one. Without ``tokenizer`` the task's ``default_tokenizer()`` is used,
    and the window defaults to the task's ``window(tokenizer)``. A turn ends at any of
    ``stop_token_ids``: by default the tokenizer's EOS plus the ``generation_config.eos_token_id``
    of the tokenizer's directory (see ``llm_gym.tokenization``).
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
        stop_token_ids: Sequence[int] | None = None,
        **options: Any,
    ):
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        options = {**(task_kwargs or {}), **options}
        given = load_tokenizer(tokenizer) if tokenizer is not None else None
        if isinstance(task, str) and given is not None and "tokenizer" in task_options(task):
            options.setdefault("tokenizer", given)
        try:
            self.task = make_task(task, **options)
        except TypeError as error:  # a misspelt option reaches the task: say what else the env takes
            raise TypeError(f"{error}; the env's own options: {', '.join(PROBLEM_OPTIONS)}") from None
        self.tokenizer = given if given is not None else load_tokenizer(self.task.default_tokenizer())
        self.reward: RewardModel = make_reward(reward if reward is not None else self.task.default_reward, self.task)
        self.gold_reward: RewardModel | None = make_reward(gold_reward, self.task)
        for part in learned_parts(self.reward) + learned_parts(self.gold_reward):
            check_reads_special_tokens(self.tokenizer, part.tokenizer, f"reward model {part.path}")
        task_own = ", or None for the task's own"
        if max_prompt_tokens is not None:
            max_prompt_tokens = positive_int("max_prompt_tokens", max_prompt_tokens, task_own)
        if max_new_tokens is not None:
            max_new_tokens = positive_int("max_new_tokens", max_new_tokens, task_own)
        task_prompt_tokens, self.max_new_tokens = self.task.window(self.tokenizer, max_new_tokens)
        self.max_prompt_tokens = max_prompt_tokens or task_prompt_tokens
        self.split: Split = split
        self.vocab_size = len(self.tokenizer)
        self.eos_token_id: int = self.tokenizer.eos_token_id
        self.pad_token_id: int = self.tokenizer.pad_token_id
        generation_config = tokenizer if isinstance(tokenizer, (str, Path)) else None
        self.stop_token_ids: tuple[int, ...] = stop_token_ids_of(self.tokenizer, stop_token_ids, generation_config)


def positive_int(name: str, value: Any, default: str = "") -> int:
    """``value`` as an int (numpy integers too), or a ``ValueError`` naming the option; ``default`` says what None
    would mean where None is allowed."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer{default}; got {value!r}")
    return int(value)


def stop_token_ids_of(tokenizer: PreTrainedTokenizerBase, given: Sequence[int] | None,
                      model_dir: str | Path | None) -> tuple[int, ...]:
    """The ids that end a turn: ``given`` (checked against the vocabulary), else the tokenizer's and model's."""
    if given is None:
        return stop_token_ids(tokenizer, model_dir)
    bad = [i for i in given if not 0 <= int(i) < len(tokenizer)]
    if bad or not given:
        raise ValueError(f"stop_token_ids {list(given)}: every id must be in the tokenizer's vocabulary "
                         f"[0, {len(tokenizer)}) and at least one is needed")
    return tuple(int(i) for i in given)


def learned_parts(model: RewardModel | None) -> list[LearnedReward]:
    """The learned reward models inside a (composite, normalised) reward."""
    if isinstance(model, LearnedReward):
        return [model]
    if isinstance(model, CompositeReward):
        return [part for _, inner in model.components.values() for part in learned_parts(inner)]
    if isinstance(model, NormalizedReward):
        return learned_parts(model.inner)
    return []
