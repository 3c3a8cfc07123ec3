"""Gymnasium environments over a shared batched episode engine."""

from llm_gym.envs.engine import EpisodeEngine, StepOutcome
from llm_gym.envs.llm_env import LLMEnv
from llm_gym.envs.problem import TextGenProblem
from llm_gym.envs.spaces import action_space, observation_space
from llm_gym.envs.vector_env import LLMVectorEnv

__all__ = [
    "EpisodeEngine",
    "LLMEnv",
    "LLMVectorEnv",
    "StepOutcome",
    "TextGenProblem",
    "action_space",
    "observation_space",
]
