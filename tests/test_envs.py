"""The env views: Gymnasium/SB3 checkers, seeding, autoreset, multi-turn and dense rewards."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import llm_gym
from llm_gym.envs import LLMEnv, LLMVectorEnv
from llm_gym.rewards import FunctionReward
from llm_gym.tasks import Sample, Task

BUILTIN_IDS = [i for i in llm_gym.llm_gym_env_ids() if i in llm_gym.registration.BUILTIN_ENV_IDS]


@pytest.mark.parametrize("granularity", ["token", "sequence"])
@pytest.mark.parametrize("env_id", BUILTIN_IDS)
def test_every_registered_env_passes_both_checkers(env_id, granularity):
    env = gym.make(env_id, granularity=granularity).unwrapped
    check_env(env, skip_render_check=False)
    sb3_check_env(env, warn=False)


def test_token_episode_scores_the_completion_at_eos():
    env = gym.make("llm_gym/Arithmetic-v0")
    obs, info = env.reset(seed=3)
    a, b = info["prompt"][:-1].split("+")
    tok = env.unwrapped.problem.tokenizer
    answer = tok(str(int(a) + int(b)), add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    rewards = []
    for t, token in enumerate(answer):
        obs, reward, terminated, truncated, info = env.step(token)
        rewards.append(reward)
        assert terminated == (t == len(answer) - 1) and not truncated
    assert rewards[:-1] == [0.0] * (len(answer) - 1) and rewards[-1] == 1.0
    assert info["completion"] == str(int(a) + int(b)) and info["gold_reward"] == 1.0 and info["eos"]
    P = env.unwrapped.problem.max_prompt_tokens
    assert obs["input_ids"][P : P + len(answer)].tolist() == answer
    assert obs["attention_mask"].sum() == len(tok(info["prompt"])["input_ids"]) + len(answer)


def test_token_episode_truncates_at_max_new_tokens():
    env = gym.make("llm_gym/Copy-v0", max_new_tokens=4)
    env.reset(seed=0)
    letter = env.unwrapped.problem.tokenizer.convert_tokens_to_ids("a")
    flags = [env.step(letter)[2:4] for _ in range(4)]
    assert flags == [(False, False)] * 3 + [(False, True)]
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(letter)


def test_sequence_step_equals_token_steps():
    token_env = gym.make("llm_gym/Reverse-v0")
    seq_env = gym.make("llm_gym/Reverse-v0", granularity="sequence")
    _, info_t = token_env.reset(seed=11)
    _, info_s = seq_env.reset(seed=11)
    assert info_t["prompt"] == info_s["prompt"]
    completion = info_s["prompt"].split()[1][:-1][::-1]
    obs_s, r_s, term_s, trunc_s, info_s = seq_env.step(completion)
    tok = token_env.unwrapped.problem.tokenizer
    for token in tok(completion, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]:
        obs_t, r_t, term_t, trunc_t, info_t = token_env.step(token)
    assert (r_s, term_s, trunc_s) == (r_t, term_t, trunc_t) == (1.0, True, False)
    np.testing.assert_array_equal(obs_s["input_ids"], obs_t["input_ids"])
    assert info_s["completion"] == info_t["completion"] == completion


def test_sequence_without_eos_terminates_and_reports_it():
    env = gym.make("llm_gym/Copy-v0", granularity="sequence", max_new_tokens=3)
    env.reset(seed=0)
    letter = env.unwrapped.problem.tokenizer.convert_tokens_to_ids("b")
    _, _, terminated, truncated, info = env.step(np.full(3, letter))
    assert terminated and not truncated and info["eos"] is False and info["completion"] == "bbb"


def test_reset_seed_reproduces_prompts():
    env = gym.make("llm_gym/Sort-v0")
    first = [env.reset(seed=5)[1]["prompt"]] + [env.reset()[1]["prompt"] for _ in range(3)]
    second = [env.reset(seed=5)[1]["prompt"]] + [env.reset()[1]["prompt"] for _ in range(3)]
    assert first == second and len(set(first)) > 1


def test_test_split_prompts_never_appear_in_train():
    train = {s.prompt for s in llm_gym.make_task("arithmetic").dataset("train", 3000, seed=0)}
    env = gym.make("llm_gym/Arithmetic-v0", split="test")
    test = {env.reset(seed=i)[1]["prompt"] for i in range(200)}
    assert not train & test


def _random_actions(rng, n, vocab, eos, p_eos=0.25):
    return np.where(rng.random(n) < p_eos, eos, rng.integers(0, vocab, size=n))


@pytest.mark.parametrize("env_id", ["llm_gym/Arithmetic-v0", "llm_gym/Keyword-v0"])
def test_vector_env_matches_single_envs_episode_for_episode(env_id):
    n, steps, seed = 4, 60, 100
    vec = gym.make_vec(env_id, num_envs=n, vectorization_mode="vector_entry_point")
    assert isinstance(vec.unwrapped, LLMVectorEnv)
    problem = vec.unwrapped.problem
    rng = np.random.default_rng(0)
    actions = [_random_actions(rng, n, problem.vocab_size, problem.eos_token_id) for _ in range(steps)]

    obs, info = vec.reset(seed=seed)
    vec_log = [[(vec.unwrapped.prompts[i], obs["input_ids"][i].tolist())] for i in range(n)]
    needs_reset = np.zeros(n, dtype=bool)
    for step_actions in actions:
        obs, reward, terminated, truncated, info = vec.step(torch.as_tensor(step_actions))
        for i in range(n):
            if needs_reset[i]:  # NEXT_STEP autoreset: action ignored, new prompt, zero reward
                assert reward[i] == 0 and not terminated[i] and not truncated[i]
                assert info["_turn"][i] and info["turn"][i] == 0  # the reset's info
                vec_log[i].append((vec.unwrapped.prompts[i], obs["input_ids"][i].tolist()))
            else:
                vec_log[i].append((float(reward[i]), bool(terminated[i]), bool(truncated[i]), obs["input_ids"][i].tolist()))
        needs_reset = (terminated | truncated).numpy()
    assert sum(len(log) for log in vec_log) > n * steps // 2

    for i in range(n):
        env = gym.make(env_id)
        obs, info = env.reset(seed=seed + i)
        log = [(info["prompt"], obs["input_ids"].tolist())]
        done = False
        for step_actions in actions:
            if done:
                obs, info = env.reset()
                log.append((info["prompt"], obs["input_ids"].tolist()))
                done = False
                continue
            obs, reward, terminated, truncated, info = env.step(int(step_actions[i]))
            log.append((reward, terminated, truncated, obs["input_ids"].tolist()))
            done = terminated or truncated
        assert log == vec_log[i], f"env {i} diverged"


def test_vector_same_step_autoreset_reports_final_obs():
    vec = LLMVectorEnv(num_envs=3, task="count", autoreset_mode="same_step")
    obs, info = vec.reset(seed=0)
    eos = vec.problem.eos_token_id
    obs, reward, terminated, truncated, info = vec.step(torch.full((3,), eos))
    assert terminated.all() and info["_final_obs"].all()
    assert vec.turn_completions == ["", "", ""]
    assert info["final_info"]["completion_length"].tolist() == [1, 1, 1]  # just the EOS
    P = vec.problem.max_prompt_tokens
    assert (info["final_obs"]["input_ids"][:, P] == eos).all()  # the ended episodes' last observations
    assert (obs["input_ids"][:, P] == vec.problem.pad_token_id).all()  # already the next prompts
    assert info["_turn"].all() and vec.prompts != vec.turn_prompts


def test_vector_sequence_granularity_scores_a_batch_of_strings():
    vec = LLMVectorEnv(num_envs=3, task="arithmetic", granularity="sequence")
    vec.reset(seed=1)
    answers = [str(eval(p[:-1])) for p in vec.prompts]
    _, reward, terminated, _, info = vec.step([answers[0], "0", answers[2]])
    assert reward.tolist() == [1.0, 0.0, 1.0] and terminated.all()
    assert info["gold_reward"].tolist() == [1.0, 0.0, 1.0]


def test_vector_partial_reset_mask():
    vec = LLMVectorEnv(num_envs=4, task="copy")
    obs, info = vec.reset(seed=0)
    before = obs["input_ids"].clone()
    obs, info = vec.reset(seed=50, options={"reset_mask": np.array([False, True, False, False])})
    assert torch.equal(obs["input_ids"][[0, 2, 3]], before[[0, 2, 3]])
    assert info["_turn"].tolist() == [False, True, False, False]


@pytest.mark.parametrize("mask, problem", [
    (np.array([0, 2]), "bool array"), (np.array([True]), r"shape \(3,\)"), ([True, False, True], "bool array"),
    (np.zeros(3, dtype=bool), "at least one True")])
def test_a_reset_mask_that_is_not_one_bool_per_slot_is_refused_as_gymnasium_refuses_it(mask, problem):
    """An index array must not be read as a mask (np.array([0, 2]) would reset slot 1 only)."""
    vec = LLMVectorEnv(num_envs=3, task="copy")
    obs, _ = vec.reset(seed=0)
    with pytest.raises(ValueError, match=problem):
        vec.reset(seed=5, options={"reset_mask": mask})
    obs, _ = vec.reset(seed=5, options={"reset_mask": torch.tensor([True, False, True])})  # torch, as the env's arrays
    assert vec.np_random_seed == 5


def test_a_vector_step_before_reset_is_refused():
    vec = LLMVectorEnv(num_envs=2)
    with pytest.raises(gym.error.ResetNeeded, match=r"slot\(s\) \[0, 1\]"):
        vec.step(np.array([5, 5]))
    with pytest.raises(ValueError, match="num_envs must be a positive integer"):
        LLMVectorEnv(num_envs=0)


def test_an_action_outside_the_vocabulary_leaves_a_pending_autoreset_pending():
    """NEXT_STEP: the step after an episode ends resets it. A step refused for another slot's bad action
    must change nothing, so the slot resets once, to the prompt an unbroken run shows."""
    def prompts(bad_step: bool) -> list[str]:
        vec = LLMVectorEnv(num_envs=2)
        vec.reset(seed=0)
        eos, one = vec.problem.eos_token_id, vec.problem.tokenizer("1", add_special_tokens=False)["input_ids"][0]
        vec.step(np.array([eos, one]))  # slot 0 ends: the next step resets it
        if bad_step:
            with pytest.raises(ValueError, match=r"action \d+ \(env 1\) is outside the vocabulary"):
                vec.step(np.array([one, vec.problem.vocab_size]))
        vec.step(np.array([one, one]))
        return vec.prompts

    assert prompts(bad_step=True) == prompts(bad_step=False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the error is for machines without CUDA")
def test_an_env_on_cuda_without_cuda_is_an_error_that_says_so():
    with pytest.raises(ValueError, match="CUDA is not available here"):
        LLMVectorEnv(num_envs=2, device="cuda")


def test_a_single_env_refuses_a_batch_of_completions_as_its_sequence_action():
    env = LLMEnv(granularity="sequence")
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"one completion, token ids of shape \(k,\).*got shape \(2, 2\)"):
        env.step(np.array([[6, 9], [13, 2]]))


@pytest.mark.parametrize("option, value", [("max_new_tokens", 0), ("max_prompt_tokens", -1), ("max_new_tokens", "4"),
                                           ("max_new_tokens", True)])
def test_a_window_size_that_is_not_a_positive_integer_is_an_error_naming_it(option, value):
    with pytest.raises(ValueError, match=f"{option} must be a positive integer"):
        gym.make("llm_gym/Arithmetic-v0", **{option: value})
    assert gym.make("llm_gym/Arithmetic-v0", max_new_tokens=np.int64(5)).unwrapped.problem.max_new_tokens == 5


@pytest.mark.parametrize("max_new_tokens", [30, 40])
def test_longer_dialogue_answers_widen_the_prompt_window_so_every_action_fits(max_new_tokens):
    """The prompt of a later turn holds the earlier answers: with answers of max_new_tokens tokens that use the
    whole window, every turn of every episode still fits (a fixed 160-token prompt window did not)."""
    env = gym.make("llm_gym/Dialogue-v0", granularity="sequence", max_new_tokens=max_new_tokens)
    token = env.unwrapped.problem.tokenizer("a", add_special_tokens=False)["input_ids"][0]
    for episode in range(20):
        env.reset(seed=episode)
        done = False
        while not done:
            _, _, terminated, truncated, _ = env.step(np.full(max_new_tokens, token))
            done = terminated or truncated


class _ThreeTurnTask(Task):
    """A scripted partner: two replies, then the conversation ends."""

    name = "three_turns"
    max_prompt_tokens, max_new_tokens = 40, 4

    def generate(self, rng):
        return Sample("hi:", "ok", {"answer": "ok"})

    def verify(self, prompts, completions, metadata):
        return np.array([c == "ok" for c in completions], dtype=np.float32)

    def reply(self, sample, completions):
        return " more:" if len(completions) < 3 else None


def test_multi_turn_episode_continues_with_the_partner_reply():
    tokenizer = llm_gym.models.train_tokenizer(["hi: ok no more:"])
    env = LLMEnv(task=_ThreeTurnTask(), tokenizer=tokenizer, granularity="sequence")
    _, info = env.reset(seed=0)
    prompts, rewards = [info["prompt"]], []
    for turn in range(3):
        _, reward, terminated, truncated, info = env.step("ok" if turn != 1 else "no")
        rewards.append(reward)
        assert info["turn"] == turn and terminated == (turn == 2) and not truncated
        prompts.append(env.engine.prompt_texts[0])
    assert rewards == [1.0, 0.0, 1.0]
    assert prompts[1] == "hi:ok more:" and prompts[2] == "hi:ok more:no more:"


def test_dense_reward_pays_per_step_differences_that_sum_to_the_final_score():
    length = FunctionReward(lambda p, c, m: [len(x) for x in c], name="chars", dense=True)
    env = gym.make("llm_gym/Copy-v0", reward=length)
    env.reset(seed=0)
    letter = env.unwrapped.problem.tokenizer.convert_tokens_to_ids("c")
    rewards = [env.step(letter)[1] for _ in range(3)]
    *_, info = env.step(env.unwrapped.problem.tokenizer.eos_token_id)
    assert rewards == [1.0, 1.0, 1.0] and info["reward_components"]["chars"] == 3.0


def test_string_action_outside_the_vocabulary_is_an_error_naming_the_characters_and_tokenizer():
    env = gym.make("llm_gym/Arithmetic-v0", granularity="sequence")
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"completion 'forty' has characters the tokenizer cannot encode: "
                                         r"'f', 'o', 'r', 't', 'y' \(tokenizer .*\(16 tokens\)\)"):
        env.step("forty")


class _PromptTask(Task):
    name = "fixed_prompt"

    def __init__(self, prompt: str = "naïve=", reply: str | None = None):
        self.prompt, self.partner = prompt, reply

    def generate(self, rng):
        return Sample(self.prompt, "ok", {"answer": "ok"})

    def verify(self, prompts, completions, metadata):
        return np.ones(len(completions), dtype=np.float32)

    def reply(self, sample, completions):
        return self.partner if len(completions) == 1 else None


@pytest.mark.parametrize("view", ["single", "vector"])
def test_prompt_with_unencodable_characters_is_an_error_not_unk_ids(view):
    tokenizer = llm_gym.models.train_tokenizer(["naive= ok"])  # no 'ï'
    kwargs = {"task": _PromptTask(), "tokenizer": tokenizer}
    env = LLMEnv(**kwargs) if view == "single" else LLMVectorEnv(num_envs=2, **kwargs)
    with pytest.raises(ValueError, match=r"prompt of task 'fixed_prompt' 'naïve=' has characters the tokenizer "
                                         r"cannot encode: 'ï' \(tokenizer \w+ \(13 tokens\)\)"):
        env.reset(seed=0)


def test_partner_reply_with_unencodable_characters_is_an_error():
    tokenizer = llm_gym.models.train_tokenizer(["naive= ok more:"])
    env = LLMEnv(task=_PromptTask("naive=", reply=" möre:"), tokenizer=tokenizer, granularity="sequence")
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"reply of task 'fixed_prompt' ' möre:' has characters .*: 'ö'"):
        env.step("ok")


@pytest.mark.parametrize("view", ["single", "vector"])
def test_too_long_string_action_is_refused_like_the_id_array(view):
    """Both forms of a 9-token completion are refused with the same message (max_new_tokens=8); both
    forms of an 8-token one are taken as written, without EOS, and both of a shorter one get EOS."""
    make = (lambda: gym.make("llm_gym/Arithmetic-v0", granularity="sequence")) if view == "single" else (
        lambda: gym.make_vec("llm_gym/Arithmetic-v0", num_envs=1, vectorization_mode="vector_entry_point",
                             granularity="sequence"))
    env = make()
    env.reset(seed=0)
    tok = env.unwrapped.problem.tokenizer
    batch = (lambda a: a) if view == "single" else (lambda a: [a] if isinstance(a, str) else a[None])
    message = r"completion of 9 tokens exceeds max_new_tokens=8"
    with pytest.raises(ValueError, match=message):
        env.step(batch("123456789"))
    with pytest.raises(ValueError, match=message):
        env.step(batch(np.array(tok("123456789", add_special_tokens=False)["input_ids"])))
    outcomes = []
    for action in ("12345678", np.array(tok("12345678", add_special_tokens=False)["input_ids"]), "12",
                   np.array(tok("12", add_special_tokens=False)["input_ids"])):
        env.reset(seed=0)
        *_, info = env.step(batch(action))
        eos = info["eos"] if view == "single" else bool(info["eos"][0])
        outcomes.append(eos)
    assert outcomes == [False, False, True, True]


@pytest.mark.parametrize("granularity, action, space", [
    ("token", "12", r"integer token ids in Discrete\(16\); got str '12'"),
    ("token", 1.5, r"integer token ids in Discrete\(16\); got float '1.5'"),
    ("sequence", np.array([1.0, 2.0]), r"integer token ids in MultiDiscrete\(\[16 16 16 16 16 16 16 16\]\) or a string"),
    ("sequence", {"ids": [1]}, r"integer token ids in MultiDiscrete.* or a string; got dict"),
])
def test_wrong_action_type_names_the_expected_space(granularity, action, space):
    env = gym.make("llm_gym/Arithmetic-v0", granularity=granularity)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=f"{granularity}-level action must be {space}"):
        env.step(action)


def test_wrong_action_type_in_the_vector_env_names_the_batch_and_the_space():
    env = LLMVectorEnv(num_envs=3, task="arithmetic")
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"a batch of 3 actions, each integer token ids in Discrete\(16\)"):
        env.step(["1", "2", "3"])


def test_render_ansi_shows_prompt_and_completion():
    env = gym.make("llm_gym/Copy-v0", render_mode="ansi")
    _, info = env.reset(seed=0)
    env.step(env.unwrapped.problem.tokenizer.convert_tokens_to_ids("d"))
    assert env.render() == info["prompt"] + "d"


def test_task_options_pass_through_make_and_a_misspelt_one_names_both_option_lists():
    env = gym.make("llm_gym/Arithmetic-v0", digits=3)
    _, info = env.reset(seed=0)
    assert len(info["prompt"].split("+")[0]) <= 3 and env.unwrapped.problem.task.digits == 3
    with pytest.raises(TypeError, match=r"task 'arithmetic': .*'digit'; its options: digits, ops; "
                                        r"the env's own options: task, tokenizer, reward"):
        gym.make("llm_gym/Arithmetic-v0", digit=3)
