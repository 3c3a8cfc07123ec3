"""Gymnasium and stable-baselines3 idioms work unchanged on llm_gym ids, written as their docs write them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.wrappers.vector import ArrayConversion, ClipReward, NormalizeReward, RecordEpisodeStatistics

import llm_gym  # noqa: F401  (registers the llm_gym/ ids)

ROOT = Path(__file__).resolve().parents[1]
ENV_ID = "llm_gym/Arithmetic-v0"
MODES = ["sync", "async", "vector_entry_point"]


@pytest.mark.parametrize("env_id, mode", [("CartPole-v1", "ansi"), (ENV_ID, "rgb_array")])
def test_unsupported_render_mode_behaves_as_in_gymnasium(env_id, mode):
    """Gymnasium's own envs and ours alike: ``make`` warns (it does not raise) and the env works;
    the first ``render()`` is refused by Gymnasium's passive env checker."""
    with pytest.warns(UserWarning, match=f"render_mode='{mode}' that is not in the possible render_modes"):
        env = gym.make(env_id, render_mode=mode)
    env.reset(seed=0)
    env.step(env.action_space.sample())
    with pytest.raises(AssertionError, match="unsupported render mode"):
        env.render()


def test_render_without_ansi_warns_and_returns_nothing():
    env = gym.make(ENV_ID, render_mode="rgb_array", disable_env_checker=True)
    env.reset(seed=0)
    with pytest.warns(UserWarning, match="renders only render_mode='ansi'"):
        assert env.render() is None


SB3_SCRIPT = """
import llm_gym
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import {vec_env_cls}

if __name__ == "__main__":
    env = make_vec_env("{env_id}", n_envs=4, vec_env_cls={vec_env_cls})
    model = PPO("MultiInputPolicy", env, n_steps=8, batch_size=16, n_epochs=1, seed=0)
    model.learn(total_timesteps=64)
    print(type(env).__name__, model.num_timesteps)
"""


def test_sb3_make_vec_env_then_ppo_learn():
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    env = make_vec_env(ENV_ID, n_envs=4)
    model = PPO("MultiInputPolicy", env, n_steps=8, batch_size=16, n_epochs=1, seed=0)
    model.learn(total_timesteps=64)
    assert type(env).__name__ == "DummyVecEnv" and model.num_timesteps == 64


def test_sb3_make_vec_env_with_subprocesses_then_ppo_learn(tmp_path):
    """Run as a user's script: SubprocVecEnv's workers start from ``__main__``, which imports llm_gym
    (under pytest ``__main__`` is pytest, which would not register the ids in the workers)."""
    script = tmp_path / "train.py"
    script.write_text(SB3_SCRIPT.format(vec_env_cls="SubprocVecEnv", env_id=ENV_ID))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["SubprocVecEnv", "64"]


def _wrapped(wrapper: type, env: gym.vector.VectorEnv) -> gym.vector.VectorEnv:
    return wrapper(env, min_reward=0.0, max_reward=0.5) if wrapper is ClipReward else wrapper(env)


def _run(env: gym.vector.VectorEnv, steps: int = 24) -> tuple[np.ndarray, dict]:
    env.reset(seed=0)
    rewards = []
    for _ in range(steps):
        _, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert isinstance(reward, np.ndarray) and reward.shape == (env.num_envs,)
        rewards.append(reward)
    env.close()
    return np.stack(rewards), info


@pytest.mark.parametrize("wrapper", [RecordEpisodeStatistics, NormalizeReward, ClipReward])
@pytest.mark.parametrize("mode", MODES)
def test_make_vec_in_gymnasium_vector_wrappers(mode, wrapper):
    """``vector_entry_point`` gives torch tensors by default: ``array_type="numpy"`` makes it numpy,
    which Gymnasium's (numpy) vector wrappers need, as they need for any torch env."""
    kwargs = {"array_type": "numpy"} if mode == "vector_entry_point" else {}
    env = gym.make_vec(ENV_ID, num_envs=3, vectorization_mode=mode, **kwargs)
    env.action_space.seed(0)
    rewards, _ = _run(_wrapped(wrapper, env))
    assert np.isfinite(rewards).all()
    if wrapper is ClipReward:
        assert rewards.max() <= 0.5


def test_record_episode_statistics_counts_the_episodes():
    env = RecordEpisodeStatistics(gym.make_vec(ENV_ID, num_envs=2, vectorization_mode="vector_entry_point",
                                               granularity="sequence", array_type="numpy"))
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step(np.zeros((2, 8), dtype=np.int64))
    assert terminated.all() and info["_episode"].all()
    np.testing.assert_array_equal(info["episode"]["r"], reward)
    np.testing.assert_array_equal(info["episode"]["l"], [1, 1])


@pytest.mark.parametrize("wrapper", [RecordEpisodeStatistics, NormalizeReward, ClipReward])
def test_torch_vector_env_in_array_conversion_then_numpy_wrappers(wrapper):
    env = gym.make_vec(ENV_ID, num_envs=3, vectorization_mode="vector_entry_point")
    obs, _ = env.reset(seed=0)
    assert isinstance(obs["input_ids"], torch.Tensor)
    env.action_space.seed(0)
    rewards, _ = _run(_wrapped(wrapper, ArrayConversion(env, env_xp=torch, target_xp=np)))
    assert np.isfinite(rewards).all()


def test_array_conversion_converts_every_info_entry_and_texts_stay_on_the_env():
    env = gym.make_vec(ENV_ID, num_envs=2, vectorization_mode="vector_entry_point", granularity="sequence")
    wrapped = ArrayConversion(env, env_xp=torch, target_xp=np)
    obs, info = wrapped.reset(seed=0)
    assert isinstance(obs["input_ids"], np.ndarray) and info["_turn"].all()
    tok = env.unwrapped.problem.tokenizer
    answers = [str(eval(p[:-1])) for p in env.unwrapped.prompts]
    actions = np.full((2, env.unwrapped.problem.max_new_tokens), tok.pad_token_id, dtype=np.int64)
    for row, answer in enumerate(answers):
        ids = tok(answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        actions[row, : len(ids)] = ids
    _, reward, terminated, _, info = wrapped.step(actions)
    np.testing.assert_array_equal(reward, [1.0, 1.0])
    np.testing.assert_array_equal(info["gold_reward"], [1.0, 1.0])
    assert isinstance(info["reward_components"]["verifier"], np.ndarray)
    lengths = info["completion_length"]
    assert [tok.decode(info["completion_ids"][i, : lengths[i]], skip_special_tokens=True) for i in range(2)] == answers
    assert env.unwrapped.turn_completions == answers
    assert [p.endswith("=") for p in env.unwrapped.turn_prompts] == [True, True]


def test_to_torch_from_the_sync_vector_env_with_numpy_to_torch():
    """The other direction: Gymnasium's ``NumpyToTorch`` over a numpy ``sync`` vector env of ``LLMEnv``."""
    from gymnasium.wrappers.vector import NumpyToTorch

    env = gym.make_vec(ENV_ID, num_envs=2, vectorization_mode="sync")
    obs, _ = env.reset(seed=0)
    obs_t, _ = NumpyToTorch(gym.make_vec(ENV_ID, num_envs=2, vectorization_mode="vector_entry_point",
                                         array_type="numpy")).reset(seed=0)
    assert isinstance(obs_t["input_ids"], torch.Tensor)
    np.testing.assert_array_equal(obs_t["input_ids"].numpy(), obs["input_ids"])
