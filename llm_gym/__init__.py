"""llm_gym: language-model text generation as Gymnasium reinforcement-learning environments.

``import llm_gym`` registers the ``llm_gym/<Task>-v0`` env ids (and those of installed plug-ins).
"""

from llm_gym.envs import LLMEnv, LLMVectorEnv, TextGenProblem
from llm_gym.registration import (
    describe_env,
    llm_gym_env_ids,
    load_env_plugins,
    register_builtin_envs,
    register_task_env,
)
from llm_gym.rewards import RewardModel, make_reward, register_reward
from llm_gym.tasks import Sample, Task, make_task, register_task

__version__ = "0.1.0"

register_builtin_envs()
load_env_plugins()

__all__ = [
    "LLMEnv",
    "LLMVectorEnv",
    "RewardModel",
    "Sample",
    "Task",
    "TextGenProblem",
    "describe_env",
    "llm_gym_env_ids",
    "make_reward",
    "make_task",
    "register_reward",
    "register_task",
    "register_task_env",
]
