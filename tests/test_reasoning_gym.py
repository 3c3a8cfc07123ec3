"""reasoning-gym adapter: env ids per generator, gold scorer, seeding, split, lazy import."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import llm_gym  # noqa: F401  (registers the ids)
from llm_gym.tasks import reasoning_gym as rg_adapter
from llm_gym.tasks.reasoning_gym import GENERATORS, EXCLUDED, RG_VERSION, ReasoningGymTask, env_id

reasoning_gym = pytest.importorskip("reasoning_gym")

# Among the fastest generators (< 0.3 ms per entry, short prompts), measured with measure_window.
FAST = ["basic_arithmetic", "chain_sum", "lcm"]


def test_table_matches_the_installed_version():
    assert version("reasoning_gym") == RG_VERSION
    assert set(GENERATORS) == set(reasoning_gym.factory.DATASETS) - set(EXCLUDED)
    assert all(env_id(name) in gymnasium.registry for name in GENERATORS)


def test_import_llm_gym_does_not_import_reasoning_gym():
    code = (
        "import sys, gymnasium, llm_gym; "
        "print('reasoning_gym' in sys.modules, 'llm_gym/RG-basic_arithmetic-v0' in gymnasium.registry)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True"]


@pytest.mark.parametrize("granularity", ["token", "sequence"])
@pytest.mark.parametrize("generator", FAST)
def test_fast_generators_pass_checkers(generator, granularity):
    env = gymnasium.make(env_id(generator), granularity=granularity)
    gym_check_env(env.unwrapped)
    sb3_check_env(env.unwrapped)
    env.close()


@pytest.mark.parametrize("generator", FAST)
def test_gold_scorer_rewards_the_reference(generator):
    env = gymnasium.make(env_id(generator), granularity="sequence")
    for seed in range(5):
        _, info = env.reset(seed=seed)
        sample = env.unwrapped.engine.samples[0]
        assert info["prompt"] == sample.prompt == sample.metadata["entry"]["question"]
        _, reward, terminated, _, info = env.step(sample.reference)
        assert terminated and reward == 1.0 and info["gold_reward"] == 1.0, (sample.prompt, sample.reference)
        env.reset(seed=seed)
        _, reward, *_ = env.step("not the answer")
        assert reward < 1.0


def test_seeded_and_split():
    a, b = gymnasium.make(env_id("chain_sum")), gymnasium.make(env_id("chain_sum"))
    prompts_a = [a.reset(seed=s)[1]["prompt"] for s in range(5)]
    assert prompts_a == [b.reset(seed=s)[1]["prompt"] for s in range(5)]
    assert len(set(prompts_a)) > 1
    task = ReasoningGymTask("chain_sum")
    train = {s.prompt for s in task.dataset("train", 100, seed=0)}
    test = {s.prompt for s in task.dataset("test", 20, seed=0)}
    assert train and test and train.isdisjoint(test)
    other = ReasoningGymTask("chain_sum", seed=1)  # reasoning-gym's own seed: other questions
    assert other.entry(0).prompt != task.entry(0).prompt


def test_config_reaches_the_generator():
    task = ReasoningGymTask("basic_arithmetic", min_terms=2, max_terms=2, operators=("+",))
    entry = task.entry(3).metadata["entry"]
    assert entry["question"].count("+") == 1 and "*" not in entry["question"]


def test_vector_env_and_byte_tokenizer_cover_any_text():
    vec = gymnasium.make_vec(env_id("lcm"), num_envs=3, vectorization_mode="vector_entry_point")
    obs, infos = vec.reset(seed=0)
    assert obs["input_ids"].shape == (3, sum(GENERATORS["lcm"]))
    tokenizer = rg_adapter.byte_tokenizer()
    text = "∫ x² dx ≈ ░▒ 😀 é"
    assert tokenizer.decode(tokenizer(text)["input_ids"], skip_special_tokens=True) == text


def test_unknown_generator():
    with pytest.raises(KeyError, match="unknown reasoning-gym generator 'nope'; known: .*basic_arithmetic"):
        gymnasium.make("llm_gym/RG-basic_arithmetic-v0", generator="nope")


def test_scorer_exception_is_a_wrong_answer(monkeypatch):
    task = ReasoningGymTask("lcm")
    sample = task.entry(0)

    def broken(answer, entry):
        raise ValueError("unparsable")

    monkeypatch.setattr(task.rg_dataset, "score_answer", broken)
    meta = {**sample.metadata, "reference": sample.reference}
    np.testing.assert_array_equal(task.verify([sample.prompt], ["???"], [meta]), [0.0])


@pytest.mark.slow
@pytest.mark.parametrize("generator", sorted(GENERATORS))
def test_every_generator_passes_checkers(generator):
    """Both checkers at both granularities; the reference scores 1 where there is one and it fits."""
    for granularity in ("token", "sequence"):
        env = gymnasium.make(env_id(generator), granularity=granularity)
        gym_check_env(env.unwrapped)
        sb3_check_env(env.unwrapped)
        env.close()
    env = gymnasium.make(env_id(generator), granularity="sequence")
    env.reset(seed=0)
    reference = env.unwrapped.engine.samples[0].reference
    if reference and len(reference.encode()) < env.unwrapped.problem.max_new_tokens:
        _, _, _, _, info = env.step(reference)
        assert info["gold_reward"] == 1.0
