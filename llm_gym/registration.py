"""Every ``gymnasium.register`` of llm_gym, in one place, plus plug-ins from installed packages.

Ids: ``llm_gym/<Task>-v0`` for each task that generates its own prompts, ``llm_gym/Dataset-v0``
(your files: ``data_files=``) and ``llm_gym/RG-<generator>-v0`` per reasoning-gym generator (when
reasoning-gym is installed; it is imported only when such an env is made). Each id makes an
``LLMEnv`` (``gymnasium.make``) or an ``LLMVectorEnv`` (``gymnasium.make_vec(...,
vectorization_mode="vector_entry_point")``); the registered kwargs name the task and its options,
and keyword arguments given at make time override them. Third-party packages add envs through the
``llm_gym.envs`` entry-point group: each entry point is a function that calls ``gymnasium.register``
(it runs when ``llm_gym`` is imported).
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

import gymnasium

from llm_gym.tasks import GENERATED_TASKS, TASKS
from llm_gym.tasks import reasoning_gym as rg

ENV_ENTRY_POINT_GROUP = "llm_gym.envs"
DATASET_ENV_ID = "llm_gym/Dataset-v0"
# Ids of the tasks that generate their own prompts (the ones every checker and fuzz test covers).
BUILTIN_ENV_IDS: dict[str, str] = {}


def env_id(task_name: str) -> str:
    """``"reverse"`` -> ``"llm_gym/Reverse-v0"``."""
    return "llm_gym/" + "".join(part.capitalize() for part in task_name.split("_")) + "-v0"


def _register(id_: str, **kwargs: Any) -> None:
    if id_ not in gymnasium.registry:
        gymnasium.register(
            id=id_,
            entry_point="llm_gym.envs:LLMEnv",
            vector_entry_point="llm_gym.envs:LLMVectorEnv",
            kwargs=kwargs,
            disable_env_checker=False,
        )


def register_task_env(task_name: str, **kwargs: Any) -> str:
    """Register ``llm_gym/<Task>-v0`` for a task name in the task registry; returns the id."""
    if task_name not in TASKS:
        raise KeyError(f"unknown task {task_name!r}; register it with llm_gym.register_task first")
    id_ = env_id(task_name)
    _register(id_, task=task_name, **kwargs)
    return id_


def register_builtin_envs() -> None:
    for cls in GENERATED_TASKS:
        BUILTIN_ENV_IDS[register_task_env(cls.name)] = cls.name
    _register(DATASET_ENV_ID, task="dataset", reward="verifier")
    if rg.installed():
        for generator in rg.GENERATORS:
            _register(rg.env_id(generator), task="reasoning_gym", generator=generator, reward="verifier")


def load_env_plugins() -> None:
    for ep in entry_points(group=ENV_ENTRY_POINT_GROUP):
        ep.load()()


def llm_gym_env_ids() -> list[str]:
    """Every registered env id under the ``llm_gym/`` namespace."""
    return sorted(i for i in gymnasium.registry if i.startswith("llm_gym/"))


def describe_env(id_: str) -> dict[str, str]:
    """``reward``, ``gold_reward`` and ``description`` of a registered id, without making the env."""
    kwargs = gymnasium.spec(id_).kwargs
    factory = TASKS.get(kwargs.get("task", "arithmetic"))
    task_class = getattr(factory, "__self__", factory)  # DatasetTask.from_files -> DatasetTask
    description = getattr(task_class, "description", "")
    options = {k: v for k, v in kwargs.items() if k not in ("task", "reward", "gold_reward")}
    if options:
        description += " (" + ", ".join(f"{k}={v!r}" for k, v in options.items()) + ")"
    reward = kwargs.get("reward") or getattr(task_class, "default_reward", "?")
    return {"reward": str(reward), "gold_reward": str(kwargs.get("gold_reward", "verifier")), "description": description}
