"""Fuzz every built-in env id with random and adversarial actions, at both granularities, in the
single and the vector env: no crash, observations inside the declared spaces, finite rewards and
infos, and every invalid action refused with an error that names its cause.

Episodes per id: ``EPISODES`` in the default suite (split over the four views), 10,000 in the slow
test. Adversarial valid actions: EOS at once (empty completion), never EOS (pad, bos, unk, the
largest id: truncation at ``max_new_tokens``), completions of exactly ``max_new_tokens`` ids, empty
and full-length strings. Invalid ones (each must raise): ids outside the vocabulary, float actions,
strings longer than the window.
"""

from __future__ import annotations

import json
import time

import gymnasium as gym
import numpy as np
import pytest
import torch

import llm_gym

IDS = sorted(llm_gym.registration.BUILTIN_ENV_IDS)
EPISODES = 500
VIEWS = [("single", "token"), ("single", "sequence"), ("vector", "token"), ("vector", "sequence")]
NUM_ENVS = 16


class Adversary:
    """Draws token and completion actions, a mix of uniform random and the adversarial cases above."""

    def __init__(self, problem, rng: np.random.Generator):
        tok = problem.tokenizer
        self.rng, self.V, self.T, self.eos = rng, problem.vocab_size, problem.max_new_tokens, problem.eos_token_id
        self.tokenizer = tok
        self.never_eos = [i for i in (tok.pad_token_id, tok.bos_token_id, tok.unk_token_id, self.V - 1, 0)
                          if i is not None and i != self.eos]

    def token(self, n: int) -> np.ndarray:
        kind = self.rng.integers(4)
        if kind == 0:
            return np.full(n, self.eos)
        if kind == 1:
            return self.rng.choice(self.never_eos, size=n)
        return self.rng.integers(0, self.V, size=n)

    def completion(self) -> np.ndarray | str:
        kind = self.rng.integers(6)
        if kind == 0:
            return np.full(self.T, self.eos)
        if kind == 1:
            return self.rng.choice(self.never_eos, size=self.T)
        if kind == 2:  # a short id array: EOS appended
            return self.rng.integers(0, self.V, size=int(self.rng.integers(0, self.T)))
        if kind == 3:  # text the tokenizer can write, from empty to the whole window
            ids = self.rng.integers(0, self.V, size=int(self.rng.integers(0, self.T + 1)))
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            return text if len(self.tokenizer(text, add_special_tokens=False)["input_ids"]) <= self.T else ""
        return self.rng.integers(0, self.V, size=self.T)

    def invalid(self, granularity: str) -> tuple[object, str]:
        """An action every env must refuse, and the words its error must contain."""
        kind = self.rng.integers(3)
        if kind == 0:
            bad = [self.V, -1][int(self.rng.integers(2))]
            return (bad if granularity == "token" else np.full(self.T, bad)), "outside the vocabulary"
        if kind == 1:
            return (0.5 if granularity == "token" else np.full(self.T, 0.5)), "integer token ids"
        if granularity == "token":
            return "1", "integer token ids in Discrete"
        return np.zeros(self.T + 1, dtype=np.int64), f"exceeds max_new_tokens={self.T}"


def _check_info(info: dict) -> None:
    for key, value in info.items():
        if isinstance(value, dict):
            _check_info(value)
        elif isinstance(value, (float, np.floating, np.ndarray)) and np.asarray(value).dtype.kind == "f":
            assert np.isfinite(value).all(), (key, value)


def _refuses(env, action, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        env.step(action)


def fuzz_single(env_id: str, granularity: str, episodes: int, seed: int, **kwargs) -> int:
    env = gym.make(env_id, granularity=granularity, **kwargs)
    problem, space = env.unwrapped.problem, env.observation_space
    adversary = Adversary(problem, np.random.default_rng(seed))
    steps = 0
    for episode in range(episodes):
        obs, info = env.reset(seed=seed + episode)
        assert space.contains(obs)
        done = False
        while not done:
            if adversary.rng.random() < 0.05:
                _refuses(env, *adversary.invalid(granularity))
            action = int(adversary.token(1)[0]) if granularity == "token" else adversary.completion()
            obs, reward, terminated, truncated, info = env.step(action)
            assert space.contains(obs) and np.isfinite(reward) and isinstance(terminated, bool)
            _check_info(info)
            done, steps = terminated or truncated, steps + 1
    env.close()
    return steps


def fuzz_vector(env_id: str, granularity: str, episodes: int, seed: int, **kwargs) -> int:
    env = gym.make_vec(env_id, num_envs=NUM_ENVS, vectorization_mode="vector_entry_point", granularity=granularity,
                       **kwargs)
    problem, space = env.unwrapped.problem, env.observation_space
    adversary = Adversary(problem, np.random.default_rng(seed))
    obs, info = env.reset(seed=seed)
    ended = steps = 0
    all_active = True  # NEXT_STEP autoreset ignores (and so does not check) the actions of resetting slots
    while ended < episodes:
        assert space.contains({k: v.numpy() for k, v in obs.items()})
        if all_active and adversary.rng.random() < 0.05:
            action, words = adversary.invalid(granularity)
            _refuses(env, np.stack([np.asarray(action)] * NUM_ENVS) if not isinstance(action, str) else [action] * NUM_ENVS,
                     words)
        if granularity == "token":
            actions = torch.as_tensor(adversary.token(NUM_ENVS))
        else:
            drawn = [adversary.completion() for _ in range(NUM_ENVS)]
            texts = [a for a in drawn if isinstance(a, str)]
            actions = texts if len(texts) == NUM_ENVS else np.stack(
                [np.pad(a, (0, problem.max_new_tokens - len(a)), constant_values=problem.pad_token_id)
                 if not isinstance(a, str) else np.full(problem.max_new_tokens, problem.eos_token_id) for a in drawn])
        obs, reward, terminated, truncated, info = env.step(actions)
        assert torch.isfinite(reward).all() and reward.shape == (NUM_ENVS,) and terminated.dtype == torch.bool
        _check_info(info)
        ended += int((terminated | truncated).sum())
        all_active = not bool((terminated | truncated).any())
        steps += 1
    env.close()
    return steps


def fuzz(env_id: str, episodes: int, seed: int = 0, **kwargs) -> dict[str, float]:
    """``episodes`` split evenly over the four views; returns the seconds each view took."""
    seconds = {}
    for view, granularity in VIEWS:
        start = time.perf_counter()
        run = fuzz_single if view == "single" else fuzz_vector
        run(env_id, granularity, episodes // len(VIEWS), seed, **kwargs)
        seconds[f"{view}/{granularity}"] = round(time.perf_counter() - start, 2)
    return seconds


@pytest.mark.parametrize("env_id", IDS)
def test_fuzz_every_builtin_env(env_id):
    print(env_id, EPISODES, "episodes", fuzz(env_id, EPISODES))


@pytest.mark.slow
@pytest.mark.parametrize("env_id", IDS)
def test_fuzz_every_builtin_env_long(env_id):
    print(env_id, 10_000, "episodes", fuzz(env_id, 10_000, seed=1))


def test_fuzz_the_dataset_env(tmp_path):
    rows = [{"prompt": f"q{i}:", "completion": f"a{i % 7}"} for i in range(40)]
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    print("llm_gym/Dataset-v0", EPISODES, "episodes", fuzz("llm_gym/Dataset-v0", EPISODES, data_files=str(path)))


@pytest.mark.parametrize("generator", ["chain_sum", "lcm"])
def test_fuzz_reasoning_gym_envs(generator):
    """Byte-level tokenizer (any text encodes) and long windows."""
    pytest.importorskip("reasoning_gym")
    env_id = f"llm_gym/RG-{generator}-v0"
    print(env_id, EPISODES, "episodes", fuzz(env_id, EPISODES))
