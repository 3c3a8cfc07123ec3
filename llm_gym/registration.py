"""Env ids: ``llm_gym/<Task>-v0`` for every built-in task, plus plug-ins from installed packages.

Each id makes an ``LLMEnv`` (``gymnasium.make``) or an ``LLMVectorEnv``
(``gymnasium.make_vec(..., vectorization_mode="vector_entry_point")``). Third-party packages add
envs through the ``llm_gym.envs`` entry-point group: each entry point is a function that calls
``gymnasium.register`` (it runs when ``llm_gym`` is imported).
"""

from __future__ import annotations

from importlib.metadata import entry_points

import gymnasium

from llm_gym.tasks import TASKS

ENV_ENTRY_POINT_GROUP = "llm_gym.envs"
BUILTIN_ENV_IDS: dict[str, str] = {}


def env_id(task_name: str) -> str:
    return "llm_gym/" + "".join(part.capitalize() for part in task_name.split("_")) + "-v0"


def register_task_env(task_name: str, **kwargs) -> str:
    """Register ``llm_gym/<Task>-v0`` for a task name in the task registry; returns the id."""
    id_ = env_id(task_name)
    gymnasium.register(
        id=id_,
        entry_point="llm_gym.envs:LLMEnv",
        vector_entry_point="llm_gym.envs:LLMVectorEnv",
        kwargs={"task": task_name, **kwargs},
        disable_env_checker=False,
    )
    BUILTIN_ENV_IDS[id_] = task_name
    return id_


def register_builtin_envs() -> None:
    for name in TASKS:
        if env_id(name) not in gymnasium.registry:
            register_task_env(name)
    from llm_gym.tasks.datasets import register_dataset_env
    from llm_gym.tasks.reasoning_gym import register_reasoning_gym_envs

    register_dataset_env()
    register_reasoning_gym_envs()


def load_env_plugins() -> None:
    for ep in entry_points(group=ENV_ENTRY_POINT_GROUP):
        ep.load()()


def llm_gym_env_ids() -> list[str]:
    """Every registered env id under the ``llm_gym/`` namespace."""
    return sorted(i for i in gymnasium.registry if i.startswith("llm_gym/"))
