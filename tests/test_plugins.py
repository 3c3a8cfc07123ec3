"""A throwaway installed package adds a reward model and an env through entry points."""

from __future__ import annotations

import sys
import textwrap

import gymnasium as gym
import pytest

import llm_gym
from llm_gym.rewards import registry


@pytest.fixture()
def throwaway_package(tmp_path, monkeypatch):
    """Installs (on sys.path, with dist-info metadata as pip would write it) a package with two plug-ins."""
    (tmp_path / "throwaway_rm").mkdir()
    (tmp_path / "throwaway_rm" / "__init__.py").write_text(textwrap.dedent('''
        import gymnasium
        import numpy as np
        from llm_gym.rewards import RewardModel

        class ShoutReward(RewardModel):
            name = "shout"
            def __init__(self, bonus=1.0):
                self.bonus = bonus
            def __call__(self, prompts, completions, metadata):
                return np.array([self.bonus * c.count("!") for c in completions])

        def register():
            gymnasium.register(id="throwaway/Shout-v0", entry_point="llm_gym.envs:LLMEnv",
                               kwargs={"task": "copy", "reward": "shout:bonus=2"})
    '''))
    dist = tmp_path / "throwaway_rm-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: throwaway-rm\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[llm_gym.rewards]\nshout = throwaway_rm:ShoutReward\n\n[llm_gym.envs]\nshout = throwaway_rm:register\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    yield
    registry.REWARDS.pop("shout", None)
    gym.registry.pop("throwaway/Shout-v0", None)
    sys.modules.pop("throwaway_rm", None)


def test_reward_plugin_through_entry_point(throwaway_package):
    reward = llm_gym.make_reward("shout:bonus=3")
    assert reward(["p"], ["hey!!"], [{}]).tolist() == [6.0]
    assert "shout" in registry.available_rewards()


def test_env_plugin_through_entry_point(throwaway_package):
    llm_gym.load_env_plugins()
    env = gym.make("throwaway/Shout-v0", granularity="sequence")
    env.reset(seed=0)
    _, reward, *_, info = env.step("a")
    assert reward == 0.0 and info["reward_components"] == {"shout": 0.0}
