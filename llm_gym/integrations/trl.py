"""llm_gym tasks and rewards in TRL: a ``datasets.Dataset`` in TRL's formats and ``reward_funcs`` entries.

Why: people who train with TRL's ``GRPOTrainer``/``RLOOTrainer`` should be able to use an llm_gym
task and any llm_gym reward (a spec string, a task's verifier, a learned reward model, a weighted
composite) without glue. The dataset carries the task's sample metadata as columns (plus
``reference``), TRL passes every column to each reward function as a keyword argument, and the
wrapper turns those columns back into the per-sample ``metadata`` an llm_gym reward reads — so a
reward scores a completion in TRL exactly as it does in the env.

The other direction for labels: a feedback file (``llm-gym feedback``) becomes TRL's preference
dataset (``feedback_to_dataset``), so the pairs that train llm_gym's reward model and DPO also train
TRL's ``RewardTrainer``/``DPOTrainer``.

TRL stays an optional dependency: this module needs ``datasets`` (not ``trl``), and nothing else in
llm_gym imports it.
"""

from __future__ import annotations

import re

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import datasets
from transformers import PreTrainedTokenizerBase

from llm_gym.feedback import read_feedback
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


def _chat_prompt(sample: Sample) -> list[dict[str, Any]]:
    if sample.messages:  # a chat row: its own messages, not the text a template rendered from them
        return [dict(message) for message in sample.messages]
    return [{"role": "user", "content": sample.prompt}]


def task_to_dataset(
    task: str | Task,
    split: Split = "train",
    size: int | None = None,
    seed: int = 0,
    format: DatasetFormat = "prompt",
    conversational: bool = False,
    **task_kwargs: Any,
) -> datasets.Dataset:
    """A ``datasets.Dataset`` of a task's samples in one of TRL's dataset formats, metadata as columns.

    ``format="prompt"`` is TRL's prompt-only type (GRPO, RLOO): a ``prompt`` column;
    ``"prompt_completion"`` adds ``completion`` = the reference answer (SFT). Either way the
    reference is also in a ``reference`` column and every metadata key of the samples is a column,
    so rewards built with ``trl_reward_func`` see the same metadata as in the env. ``size`` rows
    are drawn from a procedural task; a dataset-backed task gives all its rows (or the first ``size``).

    ``conversational=False`` is TRL's standard type: ``prompt`` is the text llm_gym's env shows the
    policy (a chat row's prompt already rendered by the tokenizer's template). ``conversational=True``
    is TRL's conversational type, which TRL renders with the trainer's tokenizer: a chat row (a
    ``messages`` dataset) gives its own messages before the answer, unrendered; any other task's
    prompt becomes one user message ``[{"role": "user", "content": prompt}]``; the completion is
    ``[{"role": "assistant", "content": reference}]``.
    """
    task = make_task(task, **task_kwargs)
    if format not in ("prompt", "prompt_completion"):
        raise ValueError(f"format must be 'prompt' or 'prompt_completion', got {format!r}")
    rows = []
    for sample in _samples(task, split, size, seed):
        clash = {"prompt", "completion", "reference"} & set(sample.metadata)
        if clash:
            raise ValueError(f"task {task.name!r}: metadata key(s) {sorted(clash)} would overwrite the columns "
                             "'prompt', 'completion' (TRL's) or 'reference'; rename them in the data")
        prompt = _chat_prompt(sample) if conversational else sample.prompt
        row = {**sample.metadata, "prompt": prompt, "reference": sample.reference}
        if format == "prompt_completion":
            row["completion"] = ([{"role": "assistant", "content": sample.reference}] if conversational
                                 else sample.reference)
        rows.append(row)
    return datasets.Dataset.from_list(rows)


def feedback_to_dataset(source: str | Path | datasets.Dataset) -> datasets.Dataset:
    """Preference feedback (``llm-gym feedback``'s ``feedback.jsonl``, a ``save_to_disk`` directory or a
    ``datasets.Dataset``) as TRL's explicit-prompt preference dataset: ``prompt``, ``chosen``, ``rejected``.

    The standard (string) type: the prompts are the env's prompts as the labeller saw them, already
    rendered. Pairs are read by ``llm_gym.feedback.read_feedback`` (the reader llm_gym's reward model
    and DPO use; errors name file and line), so a pair whose chosen equals rejected is skipped here
    too. A ``margin`` column (TRL's ``RewardTrainer`` subtracts it in its loss) is added when any pair
    has a non-zero margin. A file of pointwise ratings is refused: TRL's preference trainers need pairs.
    """
    data = read_feedback(source)
    if data.ratings:
        raise ValueError(f"{source}: holds pointwise ratings {{prompt, completion, label}}, not preference pairs; "
                         "collect pairs (llm-gym feedback --kind pairs) for TRL's preference format")
    if not data.pairs:
        raise ValueError(f"{source}: holds no preference pairs {{prompt, chosen, rejected}}")
    columns = {"prompt": [p.prompt for p in data.pairs], "chosen": [p.chosen for p in data.pairs],
               "rejected": [p.rejected for p in data.pairs]}
    if any(p.margin for p in data.pairs):
        columns["margin"] = [p.margin for p in data.pairs]
    return datasets.Dataset.from_dict(columns)


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


def spec_name(spec: str) -> str:
    """A reward spec as a name TRL can log under: ``"length:max_chars=8"`` -> ``"length_max_chars_8"``, a path by its
    last part (``"learned:path=/runs/rm"`` -> ``"learned_path_rm"``)."""
    return re.sub(r"[^\w.]+", "_", re.sub(r"[^\s,:=*+]*/", "", spec)).strip("_")


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
        try:
            return model.score(prompt_texts, completion_texts, metadata).total.tolist()
        except KeyError as err:  # a column the reward reads is not in the batch
            raise ValueError(
                f"reward {reward_func.__name__!r} reads a column the batch does not have ({err.args[0]}); the columns "
                f"with one value per completion: {sorted(data)}") from err

    # TRL logs each function under its __name__: two specs of one reward ("length:max_chars=8" and "=20") stay apart
    reward_func.__name__ = reward_func.__qualname__ = name or (spec_name(reward) if isinstance(reward, str) else model.name)
    return reward_func
