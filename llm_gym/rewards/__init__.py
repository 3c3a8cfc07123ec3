"""Reward models: the batched protocol, built-in rule/metric/learned rewards and the spec registry."""

from llm_gym.rewards.base import FunctionReward, RewardModel, RewardOutput, check_scores
from llm_gym.rewards.code_tests import CodeTests
from llm_gym.rewards.columns import TRLStyleReward
from llm_gym.rewards.composite import CompositeReward, NormalizedReward
from llm_gym.rewards.learned import LearnedReward, reward_model_text
from llm_gym.rewards.registry import REWARDS, RewardSpec, available_rewards, make_reward, register_reward

__all__ = [
    "REWARDS",
    "CodeTests",
    "CompositeReward",
    "FunctionReward",
    "LearnedReward",
    "NormalizedReward",
    "RewardModel",
    "RewardOutput",
    "RewardSpec",
    "TRLStyleReward",
    "available_rewards",
    "check_scores",
    "make_reward",
    "register_reward",
    "reward_model_text",
]
