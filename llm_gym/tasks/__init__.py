"""Tasks: seeded prompt sources with reference answers and a gold verifier, and their registry."""

from llm_gym.tasks.base import Sample, Split, Task, split_of
from llm_gym.tasks.family import FamilyTask
from llm_gym.tasks.files import DatasetError
from llm_gym.tasks.registry import GENERATED_TASKS, TASKS, make_task, register_task, task_options

__all__ = [
    "GENERATED_TASKS",
    "TASKS",
    "DatasetError",
    "FamilyTask",
    "Sample",
    "Split",
    "Task",
    "make_task",
    "register_task",
    "split_of",
    "task_options",
]
