"""llm_gym tasks and rewards in TRL: a ``datasets.Dataset`` in TRL's formats and ``reward_funcs`` entries.

Why: people who train with TRL's ``GRPOTrainer``/``RLOOTrainer`` should be able to use an llm_gym
task and any llm_gym reward (a spec string, a task's verifier, a learned reward model, a weighted
composite) without glue. The dataset carries the task's sample metadata as columns (plus
``reference``), TRL passes every column to each reward function as a keyword argument, and the
wrapper turns those columns back into the per-sample ``metadata`` an llm_gym reward reads — so a
reward scores a completion in TRL exactly as it does in the env.

TRL stays an optional dependency: this module needs ``datasets`` (not ``trl``), and nothing else in
llm_gym imports it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import datasets
from transformers import PreTrainedTokenizerBase

from llm_gym.rewards import RewardSpec, make_reward
from llm_gym.rewards.columns import TRL_RESERVED
from llm_gym.tasks import Sample, Split, Task, make_task

DatasetFormat = Literal["prompt", "prompt_completion"]


def _samples(task: Task, split: Split, size: int | None, seed: int) -> list[Sample]:
    fixed = getattr(task, "splits", None)  # a dataset-backed task: its rows, in order
    if isinstance(fixed, Mapping):
        rows = list(fixed[split])
        return rows if size is None else rows[:size]
    if size is None:
        raise ValueError(f"task {task.name!r} draws prompts procedurally: give size= (how many rows to draw)")
    return task.dataset(split, size, seed)


def task_to_dataset(
    task: str | Task,
    split: Split = "train",
    size: int | None = None,
    seed: int = 0,
    format: DatasetFormat = "prompt",
    **task_kwargs: Any,
):
    """A ``datasets.Dataset`` of a task's samples in TRL's standard (string) format, metadata as columns.

    ``format="prompt"`` is TRL's prompt-only format (GRPO, RLOO): a ``prompt`` column;
    ``"prompt_completion"`` adds ``completion`` = the reference answer (SFT). Either way the
    reference is also in a ``reference`` column and every metadata key of the samples is a column,
    so rewards built with ``trl_reward_func`` see the same metadata as in the env. ``size`` rows
    are drawn from a procedural task; a dataset-backed task gives all its rows (or the first ``size``).
    """
    task = make_task(task, **task_kwargs)
    if format not in ("prompt", "prompt_completion"):
        raise ValueError(f"format must be 'prompt' or 'prompt_completion', got {format!r}")
    rows = []
    for sample in _samples(task, split, size, seed):
        clash = {"prompt", "completion"} & set(sample.metadata)
        if clash:
            raise ValueError(f"task {task.name!r}: metadata key(s) {sorted(clash)} would overwrite TRL's own columns")
        row = {**sample.metadata, "prompt": sample.prompt, "reference": sample.reference}
        if format == "prompt_completion":
            row["completion"] = sample.reference
        rows.append(row)
    return datasets.Dataset.from_list(rows)


def _as_text(value: Any, tokenizer: PreTrainedTokenizerBase | None, what: str, prompt: bool) -> str:
    if isinstance(value, str):
        return value
    if not (isinstance(value, list) and value and isinstance(value[0], Mapping)):
        raise TypeError(f"{what} must be a string or a list of chat messages, got {type(value).__name__}")
    if not prompt:  # TRL's conversational completion: [{"role": "assistant", "content": ...}]
        return "".join(str(m.get("content", "")) for m in value)
    if tokenizer is None:
        raise ValueError(f"{what} is a list of chat messages: give trl_reward_func a tokenizer to render it")
    return tokenizer.apply_chat_template(value, add_generation_prompt=True, tokenize=False)


def trl_reward_func(
    reward: RewardSpec,
    task: str | Task | None = None,
    name: str | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> Callable[..., list[float]]:
    """An llm_gym reward as one entry of TRL's ``reward_funcs``: ``f(prompts, completions, **columns) -> list[float]``.

    ``reward`` is anything ``make_reward`` accepts (``"verifier"`` needs ``task``). The columns TRL
    passes become each sample's metadata (TRL's own extras such as ``trainer_state`` are dropped).
    Conversational prompts are rendered with ``tokenizer``'s chat template, as llm_gym renders them.
    """
    model = make_reward(reward, make_task(task) if task is not None else None)
    if model is None:
        raise ValueError("trl_reward_func needs a reward, got None")

    def reward_func(prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float]:
        n = len(completions)
        data = {k: v for k, v in columns.items() if k not in TRL_RESERVED and isinstance(v, Sequence) and len(v) == n}
        metadata = [{k: v[i] for k, v in data.items()} for i in range(n)]
        prompt_texts = [_as_text(p, tokenizer, "prompt", True) for p in prompts]
        completion_texts = [_as_text(c, tokenizer, "completion", False) for c in completions]
        return model.score(prompt_texts, completion_texts, metadata).total.tolist()

    reward_func.__name__ = reward_func.__qualname__ = name or model.name
    return reward_func
