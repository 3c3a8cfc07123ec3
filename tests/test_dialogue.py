"""Dialogue: multi-turn episodes with a scripted customer, per-component rewards, chat-file loading."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

from llm_gym.models import TinyModelConfig, save_tiny
from llm_gym.rewards import CompositeReward, make_reward
from llm_gym.tasks import make_task
from llm_gym.tasks.datasets import DatasetError
from llm_gym.scoring import format_fluency, informativeness, relevance

SPEC = "0.5*informativeness + 0.3*relevance + 0.2*fluency"


def test_multi_turn_episode_reports_every_component_each_turn():
    env = gym.make("llm_gym/Dialogue-v0", granularity="sequence", reward=SPEC, task_kwargs={"min_turns": 3})
    _, info = env.reset(seed=7)
    turns = env.unwrapped.engine.samples[0].metadata["turns"]
    assert len(turns) == 3 and info["prompt"].endswith(turns[0]["question"] + "\nbot: ")
    answers = [turns[0]["answer"], "i like boats.", turns[2]["answer"]]
    seen = []
    for k, answer in enumerate(answers):
        obs, reward, terminated, truncated, info = env.step(answer)
        parts = info["reward_components"]
        assert set(parts) == {"informativeness", "relevance", "fluency"} and info["turn"] == k
        assert reward == pytest.approx(0.5 * parts["informativeness"] + 0.3 * parts["relevance"] + 0.2 * parts["fluency"])
        seen.append((reward, info["gold_reward"], terminated))
        if k < 2:  # the customer asks the next question in the same episode
            assert not terminated and not truncated
            assert turns[k + 1]["question"] in env.unwrapped.engine.prompt_texts[0]
    assert [s[2] for s in seen] == [False, False, True]
    assert seen[0][:2] == (1.0, 1.0) and seen[2][:2] == (1.0, 1.0)
    assert seen[1][1] == 0.0 and seen[1][0] < 0.5  # off-topic but fluent: only the fluency part pays
    context = env.unwrapped.engine.prompt_texts[0]
    assert "i like boats." in context  # the policy's own answer stays in the context


def test_token_level_multi_turn_episode_continues_after_eos():
    env = gym.make("llm_gym/Dialogue-v0", task_kwargs={"min_turns": 2, "max_turns": 2})
    _, info = env.reset(seed=1)
    tok = env.unwrapped.problem.tokenizer
    turns = env.unwrapped.engine.samples[0].metadata["turns"]
    flags = []
    for turn in turns:
        for token in tok(turn["answer"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]:
            _, reward, terminated, truncated, info = env.step(token)
        flags.append((terminated, info["gold_reward"], reward))
    assert flags == [(False, 1.0, pytest.approx(1.0)), (True, 1.0, pytest.approx(1.0))]


def test_component_rewards_separate_what_they_measure():
    turn = {"question": "price of jam?", "answer": "jam is 7.", "facts": ["7"], "topic": "jam"}
    items = ["jam", "tea", "milk"]
    assert informativeness("jam is 7.", turn) == 1.0
    assert informativeness("jam is 8.", turn) == 0.0
    assert informativeness("jam is 7 or 8.", turn) == 0.5  # a wrong claim halves it
    assert relevance("jam is 7.", turn, items) == 1.0
    assert relevance("tea is 7.", turn, items) == 0.0
    assert relevance("jam is 7, tea is 4.", turn, items) == 0.5
    assert format_fluency("jam is 7.") == 1.0
    assert format_fluency("jam jam is 7") < format_fluency("jam is 7.")
    assert format_fluency("") == 0.0 or format_fluency("") < 0.5


def test_composite_spec_and_learned_option_parse():
    task = make_task("dialogue")
    reward = make_reward(SPEC, task)
    assert isinstance(reward, CompositeReward)
    assert {n: w for n, (w, _) in reward.components.items()} == {"informativeness": 0.5, "relevance": 0.3, "fluency": 0.2}
    with pytest.raises(FileNotFoundError, match="learned reward model directory not found"):
        make_reward("0.5*informativeness + 0.5*learned:path=/nonexistent/rm", task)
    with pytest.raises(FileNotFoundError, match="fluency LM directory not found"):
        make_reward("fluency:lm=/nonexistent/lm", task)


def test_fluency_under_a_local_lm_scores_in_unit_interval(tmp_path):
    task = make_task("dialogue")
    samples = task.dataset("train", 8, seed=0)
    lm = save_tiny(tmp_path / "lm", [s.prompt + s.reference for s in samples], "char", TinyModelConfig(n_layer=1, n_embd=16))
    reward = make_reward(f"fluency:lm={lm}", task)
    scores = reward([s.prompt for s in samples], [s.reference for s in samples], [s.metadata for s in samples])
    assert scores.shape == (8,) and np.all((scores > 0) & (scores <= 1))


def test_rewards_name_missing_turn_metadata():
    with pytest.raises(KeyError, match="metadata 'turns'"):
        make_reward("informativeness")(["p"], ["a."], [{"reference": "a."}])


def test_dataset_expands_conversations_into_turns():
    task = make_task("dialogue", min_turns=3)
    rows = task.dataset("train", 6, seed=0)
    assert [r.metadata["turn"] for r in rows] == [0, 1, 2, 0, 1, 2]
    assert rows[1].prompt == rows[0].prompt + rows[0].reference + rows[0].metadata["turns"][0]["reply"]
    gold = task.verify([r.prompt for r in rows], [r.reference for r in rows], [r.metadata for r in rows])
    assert np.all(gold == 1.0)


def test_messages_file_replays_the_user_turns(tmp_path):
    path = tmp_path / "chat.jsonl"
    rows = [
        {"messages": [{"role": "user", "content": "hi, any tea?"}, {"role": "assistant", "content": "yes, tea is 4."},
                      {"role": "user", "content": "and jam?"}, {"role": "assistant", "content": "jam is 7."}]},
        {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "price of milk?"},
                      {"role": "assistant", "content": "milk is 2."}]},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    task = make_task("dialogue", data_files=str(path), test_fraction=0.0)
    first = next(s for s in task.data.splits["train"] if len(s.metadata["turns"]) == 2)
    assert first.prompt == "user: hi, any tea?\nassistant: " and first.reference == "yes, tea is 4."
    assert task.reply(first, ["whatever."]) == "\nuser: and jam?\nassistant: "
    assert task.reply(first, ["a.", "b."]) is None
    meta = [{**first.metadata, "turn": k} for k in range(2)]
    gold = task.verify([first.prompt] * 2, ["yes, tea is 4.", "jam is 7."], meta)
    assert np.all(gold == 1.0)

    env = gym.make("llm_gym/Dialogue-v0", granularity="sequence", max_prompt_tokens=96,
                   task_kwargs={"data_files": str(path), "test_files": str(path)})
    env.reset(seed=0)
    _, _, terminated, _, info = env.step("jam is 7.")
    assert "gold_reward" in info


def test_messages_file_errors_name_file_line_and_field(tmp_path):
    path = tmp_path / "chat.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n" + json.dumps({"text": "x"}) + "\n")
    with pytest.raises(DatasetError, match=r"chat.jsonl line 1: 'messages' has no assistant message"):
        make_task("dialogue", data_files=str(path))
    path.write_text(json.dumps({"text": "x"}) + "\n")
    with pytest.raises(DatasetError, match=r"chat.jsonl line 1: row is missing field 'messages'"):
        make_task("dialogue", data_files=str(path))
    with pytest.raises(FileNotFoundError, match="dialogue data file not found"):
        make_task("dialogue", data_files=str(tmp_path / "missing.jsonl"))


def test_learned_reward_model_joins_the_composite(tmp_path):
    from transformers import GPT2Config, GPT2ForSequenceClassification

    tokenizer = make_task("dialogue").default_tokenizer()
    config = GPT2Config(n_layer=1, n_embd=16, n_head=2, n_positions=256, vocab_size=len(tokenizer), num_labels=1,
                        pad_token_id=tokenizer.pad_token_id)
    GPT2ForSequenceClassification(config).save_pretrained(tmp_path / "rm")
    tokenizer.save_pretrained(tmp_path / "rm")
    env = gym.make("llm_gym/Dialogue-v0", granularity="sequence",
                   reward=f"0.5*informativeness + 0.5*learned:path={tmp_path / 'rm'}")
    env.reset(seed=0)
    answer = env.unwrapped.engine.samples[0].metadata["turns"][0]["answer"]
    _, reward, _, _, info = env.step(answer)
    parts = info["reward_components"]
    assert set(parts) == {"informativeness", "learned"} and info["gold_reward"] == 1.0
    assert reward == pytest.approx(0.5 * parts["informativeness"] + 0.5 * parts["learned"], abs=1e-5)


def test_reference_based_rewards_see_each_turns_own_reference():
    """The engine asks the task for the turn's reference: chrF of the reference answer is 1 on every turn."""
    env = gym.make("llm_gym/Dialogue-v0", granularity="sequence", reward="chrf")
    _, info = env.reset(seed=3)
    turns = env.unwrapped.engine.samples[0].metadata["turns"]
    for k, turn in enumerate(turns):
        _, reward, terminated, _, info = env.step(turn["answer"])
        assert reward == pytest.approx(1.0), f"turn {k}"
    assert terminated
