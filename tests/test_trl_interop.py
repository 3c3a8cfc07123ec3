"""TRL interop both ways: llm_gym tasks/rewards inside TRL 1.16's GRPOTrainer, TRL-style rewards and
in-memory ``datasets`` inside llm_gym."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium
import numpy as np
import pytest
import torch
from chat_tokenizers import build_tokenizer, save_family
from transformers import AutoModelForSequenceClassification

import llm_gym  # noqa: F401  (registers env ids)
from llm_gym.feedback import read_feedback
from llm_gym.integrations.trl import feedback_to_dataset, spec_name, task_to_dataset, trl_reward_func
from llm_gym.models import TinyModelConfig, build_tiny_model, load_causal_lm, load_tokenizer
from llm_gym.rewards import make_reward
from llm_gym.tasks import make_task

datasets = pytest.importorskip("datasets")
trl = pytest.importorskip("trl")


@pytest.fixture(scope="module")
def learned_rm_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """A random-init scalar-head classifier sharing the tiny policy's tokenizer (a ``learned:path=`` reward)."""
    tokenizer = load_tokenizer(tiny_model_dir)
    config = build_tiny_model(tokenizer, TinyModelConfig(n_layer=1, n_embd=16, n_head=2)).config
    config.num_labels = 1
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("rm") / "rm"
    AutoModelForSequenceClassification.from_config(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def accuracy(completions, answer, **kwargs):
    """A reward function exactly as TRL users write them: dataset columns arrive as keywords."""
    return [float(c.strip() == a) for c, a in zip(completions, answer)]


def test_task_becomes_a_dataset_in_trl_formats():
    prompts = task_to_dataset("arithmetic", size=6, seed=1)
    assert prompts.column_names == ["answer", "prompt", "reference"]
    assert prompts[0]["reference"] == prompts[0]["answer"] and prompts[0]["prompt"].endswith("=")
    sft = task_to_dataset(make_task("arithmetic"), size=6, seed=1, format="prompt_completion")
    assert sft["completion"] == sft["reference"] and sft["prompt"] == prompts["prompt"]  # same rows, same seed
    assert set(task_to_dataset("arithmetic", split="test", size=20)["prompt"]).isdisjoint(
        task_to_dataset("arithmetic", split="train", size=200)["prompt"]
    )
    with pytest.raises(ValueError, match="draws prompts procedurally: give size="):
        task_to_dataset("arithmetic")
    with pytest.raises(ValueError, match="format must be 'prompt' or 'prompt_completion', got 'messages'"):
        task_to_dataset("arithmetic", size=2, format="messages")


def test_wrapped_rewards_score_as_in_the_env(learned_rm_dir):
    """Each kind of llm_gym reward, called the way GRPOTrainer calls it, equals its score on the env's metadata."""
    task = make_task("arithmetic")
    data = task_to_dataset(task, size=8)
    completions = [r if i % 2 else r + "1" for i, r in enumerate(data["reference"])]
    columns = {k: data[k] for k in data.column_names if k != "prompt"}
    trl_extras = {"completion_ids": [[0]] * 8, "trainer_state": object(), "log_extra": print, "log_metric": print}
    for spec in ("verifier", "0.5*exact_match + 0.5*length:max_chars=3", f"learned:path={learned_rm_dir}"):
        func = trl_reward_func(spec, task)
        got = func(prompts=data["prompt"], completions=completions, **columns, **trl_extras)
        metadata = [{k: v[i] for k, v in columns.items()} for i in range(8)]
        expected = make_reward(spec, task).score(data["prompt"], completions, metadata).total
        assert isinstance(got, list) and np.allclose(got, expected)
    assert trl_reward_func("verifier", task)(data["prompt"], completions, **columns) == [0.0, 1.0] * 4
    assert trl_reward_func("verifier", task).__name__ == "verifier"  # the name TRL logs it under


def grpo_two_steps(model, tokenizer, reward_funcs, dataset, out_dir):
    """TRL 1.16's GRPOTrainer, 2 steps of 4 prompts x 2 generations on the CPU; returns it after checking it trained."""
    from trl import GRPOConfig, GRPOTrainer

    args = GRPOConfig(
        output_dir=str(out_dir), max_steps=2, per_device_train_batch_size=4, num_generations=2,
        max_completion_length=6, use_cpu=True, report_to=[], logging_steps=1, save_strategy="no", learning_rate=1e-3,
    )
    trainer = GRPOTrainer(model=model, processing_class=tokenizer, args=args, reward_funcs=reward_funcs,
                          train_dataset=dataset)
    before = [p.detach().clone() for p in model.parameters()]
    trainer.train()
    assert trainer.state.global_step == 2
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))  # it trained
    return trainer


def test_grpo_trainer_runs_with_llm_gym_task_and_rewards(tiny_model_dir, learned_rm_dir, tmp_path,
                                                         fresh_accelerate_state):
    task = make_task("arithmetic")
    model, tokenizer = load_causal_lm(tiny_model_dir)
    reward_funcs = [
        trl_reward_func("verifier", task),
        trl_reward_func("0.5*exact_match + 0.5*length:max_chars=4", name="shaped"),
        trl_reward_func(f"learned:path={learned_rm_dir}"),
        accuracy,
    ]
    trainer = grpo_two_steps(model, tokenizer, reward_funcs, task_to_dataset(task, size=16), tmp_path / "grpo")
    logged = trainer.state.log_history[0]
    for name in ("verifier", "shaped", f"learned_path_{Path(learned_rm_dir).name}", "accuracy"):
        assert np.isfinite(logged[f"rewards/{name}/mean"])


# ----------------------------------------------------------------------------- TRL's dataset types
CHAT_TEXTS = [s.prompt + s.reference for s in make_task("arithmetic").dataset("train", 300, seed=0)] + [
    "system user assistant You add numbers."]


def chat_task(tokenizer):
    """A ``messages`` dataset (with a system turn) served by the Dataset task, rendered with ``tokenizer``."""
    rows = [{"messages": [{"role": "system", "content": "You add numbers."}, {"role": "user", "content": f"{a}+{a}="},
                          {"role": "assistant", "content": str(2 * a)}], "answer": str(2 * a)} for a in range(40)]
    return make_task("dataset", data_files=datasets.Dataset.from_list(rows), tokenizer=tokenizer)


@pytest.mark.parametrize("family", ["llama", "qwen"])
def test_conversational_format_round_trips_through_trl(family):
    """TRL renders a conversational row into exactly the prompt llm_gym's env shows (chat rows keep their
    own messages, not a rendering wrapped again); other tasks' prompts become one user message."""
    from trl.data_utils import is_conversational, maybe_apply_chat_template

    tokenizer, _ = build_tokenizer(family, CHAT_TEXTS)
    task = chat_task(tokenizer)
    standard = task_to_dataset(task, format="prompt_completion", size=8)
    chat = task_to_dataset(task, format="prompt_completion", size=8, conversational=True)
    assert not is_conversational(standard[0]) and is_conversational(chat[0])
    assert chat[0]["prompt"] == [{"role": "system", "content": "You add numbers."}, {"role": "user", "content": "0+0="}]
    assert chat[0]["completion"] == [{"role": "assistant", "content": "0"}]
    for row, text in zip(chat, standard):
        rendered = maybe_apply_chat_template(row, tokenizer)
        assert rendered["prompt"] == text["prompt"]  # the env's prompt, token for token
        assert rendered["completion"].startswith(text["completion"]) and row["answer"] == text["answer"]
    arithmetic = task_to_dataset("arithmetic", size=4, seed=3, conversational=True)
    plain = task_to_dataset("arithmetic", size=4, seed=3)
    assert [row["prompt"] for row in arithmetic] == [[{"role": "user", "content": p}] for p in plain["prompt"]]
    assert maybe_apply_chat_template(arithmetic[0], tokenizer)["prompt"] == tokenizer.apply_chat_template(
        [{"role": "user", "content": plain[0]["prompt"]}], add_generation_prompt=True, tokenize=False)


def test_grpo_trainer_runs_on_the_conversational_dataset(tmp_path, fresh_accelerate_state):
    model_dir = save_family(tmp_path / "qwen", "qwen", CHAT_TEXTS)
    model, tokenizer = load_causal_lm(model_dir)
    task = chat_task(tokenizer)

    def characters(completions, **kwargs):  # TRL style on conversational completions; varies, unlike the
        return [float(len(c[0]["content"])) for c in completions]  # verifier on an untrained model

    reward_funcs = [trl_reward_func("verifier", task, tokenizer=tokenizer), characters]
    trainer = grpo_two_steps(model, tokenizer, reward_funcs, task_to_dataset(task, size=16, conversational=True),
                             tmp_path / "grpo")
    assert all(np.isfinite(trainer.state.log_history[0][f"rewards/{name}/mean"]) for name in ("verifier", "characters"))


def test_metadata_that_would_overwrite_a_trl_column_is_refused_by_name():
    rows = [{"prompt": "1+1=", "completion": "2", "reference": "two"}]
    with pytest.raises(ValueError, match=r"task 'dataset': metadata key\(s\) \['reference'\] would overwrite"):
        task_to_dataset("dataset", data_files=datasets.Dataset.from_list(rows))


def test_feedback_becomes_trl_preference_pairs(tmp_path):
    from trl.data_utils import is_conversational

    path = tmp_path / "feedback.jsonl"  # as ``llm-gym feedback`` writes it (an id per label)
    rows = [{"id": "0:0-1", "prompt": "1+1=", "chosen": "2", "rejected": "3"},
            {"id": "0:0-2", "prompt": "1+1=", "chosen": "2", "rejected": "2"},  # no preference: skipped
            {"id": "1:0-1", "prompt": "2+2=", "chosen": "4", "rejected": "5"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    pairs = feedback_to_dataset(path)
    assert pairs.column_names == ["prompt", "chosen", "rejected"] and not is_conversational(pairs[0])
    assert pairs.to_list() == [{"prompt": "1+1=", "chosen": "2", "rejected": "3"},
                               {"prompt": "2+2=", "chosen": "4", "rejected": "5"}]
    path.write_text(json.dumps(rows[0]) + "\n" + json.dumps({"prompt": "2+2=", "chosen": "4"}) + "\n")
    with pytest.raises(ValueError, match=rf"{path}:2: row is missing field\(s\) \['rejected'\]"):
        feedback_to_dataset(path)
    path.write_text(json.dumps(rows[0]) + "\n{not json\n")
    with pytest.raises(ValueError, match=rf"{path}:2: not valid JSON"):
        feedback_to_dataset(path)
    path.write_text(json.dumps({"prompt": "1+1=", "completion": "2", "label": 1}) + "\n")
    with pytest.raises(ValueError, match="holds pointwise ratings .* not preference pairs"):
        feedback_to_dataset(path)


ROWS = [{"prompt": f"{a}+{a}=", "completion": str(2 * a), "answer": str(2 * a)} for a in range(30)]


def test_trl_style_reward_and_in_memory_dataset_in_an_env():
    rows = datasets.Dataset.from_list(ROWS)
    env = gymnasium.make("llm_gym/Dataset-v0", data_files=rows, reward=accuracy, granularity="sequence")
    env.reset(seed=0)
    sample = env.unwrapped.engine.samples[0]
    _, reward, *_ = env.step(sample.metadata["answer"])
    assert reward == 1.0
    env.reset(seed=0)
    assert env.step("999")[1] == 0.0

    def with_prompts(prompts, completions, answer):  # no **kwargs: only the named column is passed
        return [float(p.endswith("=") and c == a) for p, c, a in zip(prompts, completions, answer)]

    assert make_reward(with_prompts)(["1+1="], ["2"], [{"answer": "2", "other": 1}]).tolist() == [1.0]


def test_an_async_trl_style_reward_is_awaited_in_a_script_and_inside_a_running_event_loop():
    import asyncio

    async def accuracy_async(completions, answer, **kwargs):
        await asyncio.sleep(0)
        return [float(c == a) for c, a in zip(completions, answer)]

    reward = make_reward(accuracy_async)
    assert reward(["1+1="], ["2"], [{"answer": "2"}]).tolist() == [1.0]

    async def from_a_notebook():  # Jupyter runs cells inside an event loop
        return reward(["1+1="], ["3"], [{"answer": "2"}]).tolist()

    assert asyncio.run(from_a_notebook()) == [0.0]


def test_a_trl_style_reward_returning_none_is_an_error_that_says_none():
    def not_applicable(completions, **kwargs):
        return [None if c == "skip" else 1.0 for c in completions]

    with pytest.raises(ValueError, match=r"reward 'not_applicable' returned None for sample\(s\) \[1\]"):
        make_reward(not_applicable)(["a", "b"], ["ok", "skip"], [{}, {}])


def test_a_wrapped_reward_missing_its_column_names_the_reward_and_the_columns_it_got():
    with pytest.raises(ValueError, match=r"reward 'exact_match' reads a column the batch does not have .*'answer' or "
                                         r"'reference'.*one value per completion: \['solution'\]"):
        trl_reward_func("exact_match")(prompts=["1+1="], completions=["2"], solution=["2"])


def test_wrapped_specs_of_one_reward_log_under_different_names():
    names = [trl_reward_func(spec).__name__ for spec in ("length:max_chars=8", "length:max_chars=20",
                                                         "0.5*exact_match + 0.5*length:max_chars=4")]
    assert names == ["length_max_chars_8", "length_max_chars_20", "0.5_exact_match_0.5_length_max_chars_4"]
    assert spec_name("learned:path=/runs/rm_a") == "learned_path_rm_a"


def test_dataset_dict_in_memory_gives_its_splits():
    test_rows = [{"prompt": "100+100=", "completion": "200", "answer": "200"}]
    data = datasets.DatasetDict(train=datasets.Dataset.from_list(ROWS), test=datasets.Dataset.from_list(test_rows))
    env = gymnasium.make("llm_gym/Dataset-v0", data_files=data, split="test", granularity="sequence")
    _, info = env.reset(seed=0)
    assert info["prompt"] == "100+100="
    vec = gymnasium.make_vec("llm_gym/Dataset-v0", num_envs=2, vectorization_mode="vector_entry_point",
                             data_files=data["train"], test_files=data["test"], granularity="sequence")
    assert vec.unwrapped.problem.task.splits["test"][0].prompt == "100+100="


def test_trl_style_reward_missing_column_names_the_column_and_the_reward():
    def needs_solution(prompts, completions, solution, **kwargs):
        return [0.0] * len(completions)

    env = gymnasium.make("llm_gym/Dataset-v0", data_files=datasets.Dataset.from_list(ROWS), reward=needs_solution,
                         granularity="sequence")
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"reward 'needs_solution' needs column 'solution'.*columns: \['answer'"):
        env.step("2")


def test_in_memory_dataset_dict_without_a_train_split_is_refused():
    data = datasets.DatasetDict(validation=datasets.Dataset.from_list(ROWS))
    with pytest.raises(ValueError, match=r"in-memory DatasetDict holds splits \['validation'\] but no 'train' split"):
        gymnasium.make("llm_gym/Dataset-v0", data_files=data)


def test_feedback_rows_from_an_in_memory_dataset():
    pairs = datasets.Dataset.from_list([{"prompt": "1+1=", "chosen": "2", "rejected": "3"},
                                        {"prompt": "2+2=", "chosen": "4", "rejected": "4"}])
    data = read_feedback(pairs)
    assert [(p.prompt, p.chosen) for p in data.pairs] == [("1+1=", "2")] and data.skipped == {"chosen_equals_rejected": 1}
    with pytest.raises(ValueError, match=r"in-memory dataset row 1: row is missing field\(s\) \['rejected'\]"):
        read_feedback(datasets.Dataset.from_list([{"prompt": "1+1=", "chosen": "2"}]))
    with pytest.raises(ValueError, match=r"is a DatasetDict \(splits \['train'\]\); give one split"):
        read_feedback(datasets.DatasetDict(train=pairs))
