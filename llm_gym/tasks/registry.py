"""The task registry: names usable as ``task=`` in ``gymnasium.make`` and on the command line.

Every built-in task is listed here, in one place, rather than registering itself on import.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from llm_gym.tasks.base import Task
from llm_gym.tasks.code import Code
from llm_gym.tasks.datasets import DatasetTask
from llm_gym.tasks.dialogue import Dialogue
from llm_gym.tasks.procedural import Arithmetic, Copy, Count, Keyword, Reverse, Sort
from llm_gym.tasks.reasoning_gym import ReasoningGymTask
from llm_gym.tasks.summarization import Summarization
from llm_gym.tasks.translation import Translation

TaskFactory = Callable[..., Task]

# Tasks that generate their own prompts: each gets an env id ``llm_gym/<Task>-v0`` that needs no option.
GENERATED_TASKS: tuple[type[Task], ...] = (
    Arithmetic,
    Copy,
    Reverse,
    Sort,
    Count,
    Keyword,
    Dialogue,
    Summarization,
    Translation,
    Code,
)
TASKS: dict[str, TaskFactory] = {
    **{cls.name: cls for cls in GENERATED_TASKS},
    "dataset": DatasetTask.from_files,  # needs data_files=
    "reasoning_gym": ReasoningGymTask,  # needs generator=
}


def register_task(cls: type[Task]) -> type[Task]:
    """Make a task class available by its ``name`` (usable as a decorator)."""
    TASKS[cls.name] = cls
    return cls


def _factory(task: str) -> TaskFactory:
    if task not in TASKS:
        raise KeyError(f"unknown task {task!r}; known tasks: {', '.join(sorted(TASKS))}")
    return TASKS[task]


def task_options(task: str) -> list[str]:
    """The keyword options a registered task accepts (for error messages and ``--help``)."""
    parameters = inspect.signature(_factory(task)).parameters.values()
    return [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def make_task(task: str | Task, **kwargs: Any) -> Task:
    """Resolve a task name with its options (or pass a ``Task`` through)."""
    if isinstance(task, Task):
        if kwargs:
            raise TypeError(f"task options {sorted(kwargs)} given with a ready Task instance")
        return task
    factory = _factory(task)
    try:
        inspect.signature(factory).bind(**kwargs)
    except TypeError as error:
        raise TypeError(f"task {task!r}: {error}; its options: {', '.join(task_options(task)) or 'none'}") from None
    return factory(**kwargs)
