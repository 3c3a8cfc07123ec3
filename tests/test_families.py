"""The application families (dialogue, translation, summarisation, code) as envs: checkers, gold rewards, vector env."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import llm_gym
from llm_gym.tasks import make_task

FAMILY_IDS = {
    "dialogue": "llm_gym/Dialogue-v0",
    "translation": "llm_gym/Translation-v0",
    "summarization": "llm_gym/Summarization-v0",
    "code": "llm_gym/Code-v0",
}


def corrupt(task_name: str, reference: str) -> str:
    """A plausible wrong answer: the reference with its facts, words or code damaged."""
    if task_name == "code":
        return reference.replace("return x", "return x+1")
    if task_name == "translation":
        return " ".join(reversed(reference.split()))
    if task_name == "summarization":
        return reference.split(",")[0] + "."  # only the name survives
    return "".join("5" if ch.isdigit() else ch for ch in reference).replace("no ", "yes ")


def metadata_of(sample) -> dict:
    return {**sample.metadata, "reference": sample.reference}


def test_family_env_ids_are_registered_with_descriptions():
    for name, env_id in FAMILY_IDS.items():
        assert env_id in llm_gym.llm_gym_env_ids()
        assert make_task(name).description


@pytest.mark.parametrize("granularity", ["token", "sequence"])
@pytest.mark.parametrize("env_id", list(FAMILY_IDS.values()))
def test_family_envs_pass_both_checkers(env_id, granularity):
    env = gym.make(env_id, granularity=granularity).unwrapped
    check_env(env, skip_render_check=False)
    sb3_check_env(env, warn=False)


@pytest.mark.parametrize("name", list(FAMILY_IDS))
def test_gold_reward_ranks_reference_top_and_corruption_lower(name):
    task = make_task(name)
    samples = task.dataset("test", 24, seed=1)
    prompts, meta = [s.prompt for s in samples], [metadata_of(s) for s in samples]
    gold_ref = task.verify(prompts, [s.reference for s in samples], meta)
    gold_bad = task.verify(prompts, [corrupt(name, s.reference) for s in samples], meta)
    gold_empty = task.verify(prompts, [""] * len(samples), meta)
    assert np.all(gold_ref == 1.0), gold_ref
    assert gold_bad.mean() < 0.75 and np.all(gold_bad <= gold_ref)
    assert np.all(gold_empty == 0.0)


@pytest.mark.parametrize("name", list(FAMILY_IDS))
def test_sequence_episode_with_reference_has_gold_one(name):
    env = gym.make(FAMILY_IDS[name], granularity="sequence")
    _, info = env.reset(seed=5)
    sample = env.unwrapped.engine.samples[0]
    turns = sample.metadata.get("turns") or [{"answer": sample.reference}]
    for k, turn in enumerate(turns):
        _, reward, terminated, truncated, info = env.step(turn["answer"])
        assert info["gold_reward"] == 1.0 and info["turn"] == k and info["completion"] == turn["answer"]
        assert terminated == (k == len(turns) - 1) and not truncated
    assert reward > 0 and all(np.isfinite(list(info["reward_components"].values())))


@pytest.mark.parametrize("name", list(FAMILY_IDS))
def test_family_runs_in_the_vector_env(name):
    envs = gym.make_vec(FAMILY_IDS[name], num_envs=3, vectorization_mode="vector_entry_point", granularity="sequence")
    obs, infos = envs.reset(seed=0)
    assert obs["input_ids"].shape[0] == 3
    prompts = envs.unwrapped.prompts
    samples = [envs.unwrapped.engine.samples[i] for i in range(3)]
    answers = [s.metadata["turns"][0]["answer"] if "turns" in s.metadata else s.reference for s in samples]
    obs, reward, terminated, truncated, infos = envs.step(answers)
    assert torch.is_tensor(reward) and reward.shape == (3,)
    assert infos["_gold_reward"].all() and np.all(infos["gold_reward"] == 1.0)
    assert envs.unwrapped.turn_completions == answers and len(set(prompts)) == 3
    envs.close()


@pytest.mark.parametrize("name", list(FAMILY_IDS))
def test_default_tokenizer_covers_the_family_text(name):
    task = make_task(name)
    tokenizer = task.default_tokenizer()
    for sample in task.dataset("test", 50, seed=2):
        ids = tokenizer(sample.prompt + sample.reference)["input_ids"]
        assert tokenizer.unk_token_id not in ids
        assert len(tokenizer(sample.prompt)["input_ids"]) <= task.max_prompt_tokens
        assert len(tokenizer(sample.reference, add_special_tokens=False)["input_ids"]) < task.max_new_tokens


@pytest.mark.parametrize("name", list(FAMILY_IDS))
def test_splits_are_disjoint_and_seeded(name):
    task = make_task(name)
    first = lambda s: s.metadata["turns"][0]["question"] if "turns" in s.metadata else None  # noqa: E731
    train = {s.prompt for s in task.dataset("train", 60, seed=0) if s.metadata.get("turn", 0) == 0}
    test = {s.prompt for s in task.dataset("test", 60, seed=0) if s.metadata.get("turn", 0) == 0}
    assert train and test and not train & test
    again = task.dataset("test", 10, seed=0)
    assert [s.prompt for s in again] == [s.prompt for s in task.dataset("test", 10, seed=0)]
    assert first(again[0]) == first(task.dataset("test", 1, seed=0)[0])
