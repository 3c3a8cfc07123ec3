"""Task registry: names usable as ``task=`` in ``gymnasium.make`` and on the command line."""

from __future__ import annotations

from typing import Any

from llm_gym.tasks.base import Sample, Split, Task, split_of
from llm_gym.tasks.procedural import Arithmetic, Copy, Count, Keyword, Reverse, Sort

TASKS: dict[str, type[Task]] = {}


def register_task(cls: type[Task]) -> type[Task]:
    """Make a task class available by its ``name`` (usable as a decorator)."""
    TASKS[cls.name] = cls
    return cls


for _cls in (Arithmetic, Copy, Reverse, Sort, Count, Keyword):
    register_task(_cls)


def make_task(task: str | Task, **kwargs: Any) -> Task:
    """Resolve a task name (or pass a ``Task`` through)."""
    if isinstance(task, Task):
        if kwargs:
            raise TypeError(f"task options {sorted(kwargs)} given with a ready Task instance")
        return task
    if task not in TASKS:
        raise KeyError(f"unknown task {task!r}; known tasks: {', '.join(sorted(TASKS))}")
    return TASKS[task](**kwargs)


__all__ = ["TASKS", "Sample", "Split", "Task", "make_task", "register_task", "split_of"]

# Application families (issue 5); imported last because they register themselves with register_task.
from llm_gym.tasks import code, dialogue, summarization, translation  # noqa: E402,F401
