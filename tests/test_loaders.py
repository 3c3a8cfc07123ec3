"""Dataset loaders: each format from JSONL and from a ``save_to_disk`` directory, bad input, envs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import llm_gym  # noqa: F401  (registers llm_gym/Dataset-v0)
from llm_gym.models import train_tokenizer
from llm_gym.tasks.datasets import ALPACA_INPUT_TEMPLATE, ALPACA_TEMPLATE, DatasetError, DatasetTask, load_samples

PC_ROWS = [{"prompt": f"{a}+{a}=", "completion": str(2 * a)} for a in range(40)]
ALPACA_ROWS = [
    {"instruction": "Add the numbers.", "input": "2 3", "output": "5"},
    {"instruction": "Say hi.", "input": "", "output": "hi"},
    {"instruction": "Say bye.", "output": "bye"},
]
CHAT_ROWS = [
    {"messages": [{"role": "user", "content": f"double {a}"}, {"role": "assistant", "content": str(2 * a)}]}
    for a in range(10)
]
PREF_ROWS = [{"prompt": f"color {a}:", "chosen": "blue", "rejected": "red", "id": a} for a in range(10)]


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def save_hf(path: Path, rows: list) -> Path:
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_list(rows).save_to_disk(str(path))
    return path


@pytest.fixture(scope="module")
def chat_tokenizer():
    text = "".join(json.dumps(r) for r in CHAT_ROWS + PC_ROWS) + "abcdefghijklmnopqrstuvwxyz: \n"
    return train_tokenizer([text], kind="char")


# ------------------------------------------------------------------------------------------ formats
@pytest.mark.parametrize("storage", ["jsonl", "hf"])
def test_prompt_completion(tmp_path, storage):
    path = write_jsonl(tmp_path / "d.jsonl", PC_ROWS) if storage == "jsonl" else save_hf(tmp_path / "d", PC_ROWS)
    samples = load_samples(path)
    assert [(s.prompt, s.reference) for s in samples] == [(r["prompt"], r["completion"]) for r in PC_ROWS]
    task = DatasetTask.from_files(path)
    assert {s.prompt for s in task.splits["train"]}.isdisjoint(s.prompt for s in task.splits["test"])
    assert len(task.splits["train"]) + len(task.splits["test"]) == len(PC_ROWS)
    assert task.splits["test"], "a 10% hash split of 40 rows should hold at least one test row"
    sample = task.sample(np.random.default_rng(0), "test")
    assert sample in task.splits["test"]


@pytest.mark.parametrize("storage", ["jsonl", "hf"])
def test_alpaca(tmp_path, storage):
    rows = ALPACA_ROWS
    path = write_jsonl(tmp_path / "a.jsonl", rows) if storage == "jsonl" else save_hf(tmp_path / "a", rows)
    samples = load_samples(path)
    assert samples[0].prompt == ALPACA_INPUT_TEMPLATE.format(instruction="Add the numbers.", input="2 3")
    assert samples[1].prompt == ALPACA_TEMPLATE.format(instruction="Say hi.")  # empty input: no Input section
    assert samples[2].prompt == ALPACA_TEMPLATE.format(instruction="Say bye.")
    assert [s.reference for s in samples] == ["5", "hi", "bye"]


@pytest.mark.parametrize("storage", ["jsonl", "hf"])
def test_messages_use_chat_template(tmp_path, storage, chat_tokenizer):
    path = write_jsonl(tmp_path / "c.jsonl", CHAT_ROWS) if storage == "jsonl" else save_hf(tmp_path / "c", CHAT_ROWS)
    samples = load_samples(path, tokenizer=chat_tokenizer)
    expected = chat_tokenizer.apply_chat_template(
        CHAT_ROWS[3]["messages"][:-1], add_generation_prompt=True, tokenize=False
    )
    assert samples[3].prompt == expected == "user: double 3\nassistant: "
    assert samples[3].reference == "6"


@pytest.mark.parametrize("storage", ["jsonl", "hf"])
def test_preference(tmp_path, storage):
    path = write_jsonl(tmp_path / "p.jsonl", PREF_ROWS) if storage == "jsonl" else save_hf(tmp_path / "p", PREF_ROWS)
    task = DatasetTask.from_files(path, test_fraction=0.0)
    sample = task.samples[0]
    assert sample.reference == "blue"
    assert sample.metadata == {"id": 0, "chosen": "blue", "rejected": "red"}
    meta = [{**sample.metadata, "reference": sample.reference}] * 3
    np.testing.assert_array_equal(task.verify([sample.prompt] * 3, [" blue ", "red", "blue!"], meta), [1, 0, 0])


def test_explicit_format_and_test_file(tmp_path):
    rows = [{"prompt": "p1", "completion": "c1", "chosen": "x", "rejected": "y"}]
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    test = write_jsonl(tmp_path / "test.jsonl", [{"prompt": "q", "completion": "r"}])
    assert load_samples(train)[0].reference == "x"  # auto-detect prefers the preference format
    task = DatasetTask.from_jsonl(train, test, format="prompt_completion")
    assert task.splits["train"][0].reference == "c1" and task.splits["test"][0].reference == "r"


def test_hf_dataset_dict_splits(tmp_path):
    datasets = pytest.importorskip("datasets")
    dd = datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(PC_ROWS[:30]), "test": datasets.Dataset.from_list(PC_ROWS[30:])}
    )
    dd.save_to_disk(str(tmp_path / "dd"))
    task = DatasetTask.from_disk(tmp_path / "dd")
    assert len(task.splits["train"]) == 30 and len(task.splits["test"]) == 10
    with pytest.raises(DatasetError, match="holds splits .*'test', 'train'.*choose one with split="):
        load_samples(tmp_path / "dd")


def test_window_fits_the_data(tmp_path, chat_tokenizer):
    task = DatasetTask.from_jsonl(write_jsonl(tmp_path / "d.jsonl", PC_ROWS), tokenizer=chat_tokenizer)
    assert task.max_prompt_tokens == 1 + len("39+39=")  # bos + characters
    assert task.max_new_tokens == len("78") + 1  # + EOS


# ---------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "lines, message",
    [
        ([PC_ROWS[0], PC_ROWS[1], {"prompt": "x"}], r"d\.jsonl line 3: row is missing field 'completion'"),
        ([PC_ROWS[0], {"prompt": "x", "completion": None}], r"d\.jsonl line 2: row is missing field 'completion'"),
        ([{"prompt": "x"}], r"line 1: cannot detect .*closest: 'prompt_completion', missing field 'completion'"),
        ([PC_ROWS[0], {"prompt": 3, "completion": "x"}], r"line 2: field 'prompt' must be a string, got int"),
        ([PC_ROWS[0], ["prompt", "completion"]], r"line 2: row must be a JSON object, got list"),
        ([PREF_ROWS[0], {"prompt": "p", "chosen": "c"}], r"line 2: row is missing field 'rejected'"),
        ([ALPACA_ROWS[0], {"input": "i", "output": "o"}], r"line 2: row is missing field 'instruction'"),
    ],
)
def test_bad_rows_name_file_line_and_field(tmp_path, lines, message):
    path = write_jsonl(tmp_path / "d.jsonl", lines)
    with pytest.raises(DatasetError, match=message):
        load_samples(path)


def test_bad_json_names_file_and_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(PC_ROWS[0]) + "\n\n" + '{"prompt": "a", "completion": \n')
    with pytest.raises(DatasetError, match=r"d\.jsonl line 3: invalid JSON"):
        load_samples(path)


def test_empty_dataset(tmp_path):
    (tmp_path / "e.jsonl").write_text("\n")
    with pytest.raises(DatasetError, match=r"e\.jsonl: the dataset is empty"):
        load_samples(tmp_path / "e.jsonl")
    datasets = pytest.importorskip("datasets")
    empty = datasets.Dataset.from_list(PC_ROWS[:1]).select([])
    empty.save_to_disk(str(tmp_path / "empty"), num_shards=1)  # datasets cannot reload a 0-shard save
    with pytest.raises(DatasetError, match=r"/empty: the dataset is empty"):
        load_samples(tmp_path / "empty")


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="dataset file not found: nope.jsonl"):
        load_samples("nope.jsonl")


def test_hf_row_missing_field_names_row(tmp_path):
    rows = [PC_ROWS[0], PC_ROWS[1], {"prompt": "x", "completion": None}]
    with pytest.raises(DatasetError, match=r"/d row 3: row is missing field 'completion'"):
        load_samples(save_hf(tmp_path / "d", rows))


def test_messages_errors(tmp_path, chat_tokenizer):
    path = write_jsonl(tmp_path / "c.jsonl", CHAT_ROWS)
    with pytest.raises(DatasetError, match=r"c\.jsonl line 1: format 'messages' needs a tokenizer"):
        load_samples(path)
    bad = [{"messages": [{"role": "assistant", "content": "x"}, {"role": "user", "content": "y"}]}]
    with pytest.raises(DatasetError, match=r"line 1: the last message must be the assistant's.*'user'"):
        load_samples(write_jsonl(tmp_path / "b.jsonl", bad), tokenizer=chat_tokenizer)
    no_template = train_tokenizer(["abc"], kind="char")
    no_template.chat_template = None
    with pytest.raises(DatasetError, match=r"line 1: cannot apply the tokenizer's chat template"):
        load_samples(path, tokenizer=no_template)


def test_missing_datasets_package(tmp_path, monkeypatch):
    (tmp_path / "d").mkdir()
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` raise ImportError
    with pytest.raises(ImportError, match=r"needs the 'datasets' package: pip install 'llm-gym\[datasets\]'"):
        load_samples(tmp_path / "d")


def test_empty_split_is_an_error(tmp_path):
    task = DatasetTask.from_jsonl(write_jsonl(tmp_path / "d.jsonl", PC_ROWS[:1]), test_fraction=0.0)
    with pytest.raises(DatasetError, match="no 'test' rows"):
        task.sample(np.random.default_rng(0), "test")


# --------------------------------------------------------------------------------------------- envs
@pytest.mark.parametrize("granularity", ["token", "sequence"])
def test_dataset_env_passes_checkers(tmp_path, chat_tokenizer, granularity):
    path = write_jsonl(tmp_path / "d.jsonl", PC_ROWS)
    env = gymnasium.make("llm_gym/Dataset-v0", data_files=str(path), tokenizer=chat_tokenizer, granularity=granularity)
    gym_check_env(env.unwrapped)
    sb3_check_env(env.unwrapped)
    env.close()


def test_dataset_env_rewards_the_reference(tmp_path, chat_tokenizer):
    path = write_jsonl(tmp_path / "c.jsonl", CHAT_ROWS)
    task = DatasetTask.from_jsonl(path, tokenizer=chat_tokenizer, test_fraction=0.0)
    env = gymnasium.make("llm_gym/Dataset-v0", task=task, tokenizer=chat_tokenizer, granularity="sequence")
    _, info = env.reset(seed=3)
    reference = {s.prompt: s.reference for s in task.samples}[info["prompt"]]
    _, reward, terminated, _, info = env.step(reference)
    assert terminated and reward == 1.0 and info["gold_reward"] == 1.0
    env.reset(seed=3)
    _, reward, *_ = env.step("w")  # a wrong answer that fits the window (a longer one is an error)
    assert reward == 0.0


def test_dataset_env_default_tokenizer_and_vector(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", PREF_ROWS)
    env = gymnasium.make("llm_gym/Dataset-v0", data_files=path, granularity="sequence")  # char tokenizer from the data
    _, info = env.reset(seed=0)
    _, reward, *_ = env.step("blue")
    assert reward == 1.0
    vec = gymnasium.make_vec("llm_gym/Dataset-v0", num_envs=4, vectorization_mode="vector_entry_point", data_files=path)
    obs, infos = vec.reset(seed=0)
    assert obs["input_ids"].shape == (4, vec.unwrapped.problem.max_prompt_tokens + vec.unwrapped.problem.max_new_tokens)
    assert set(vec.unwrapped.prompts) <= {r["prompt"] for r in PREF_ROWS}


def test_dataset_env_needs_data():
    with pytest.raises(ValueError, match=r"llm_gym/Dataset-v0\) needs data_files="):
        gymnasium.make("llm_gym/Dataset-v0")
