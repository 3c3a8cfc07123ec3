"""Translation: the toy language pair, its rewards, and source/target JSONL files."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

from llm_gym.rewards import make_reward
from llm_gym.tasks import make_task
from llm_gym.tasks.datasets import DatasetError
from llm_gym.tasks.translation import translate


def test_toy_language_changes_words_and_order():
    assert translate("the big cat sees a fish") == "mi ga san ka"
    assert translate("a dog likes the small old bird") == "wu pin ti ba lu"
    with pytest.raises(ValueError, match="not a sentence of the toy grammar"):
        translate("the cat sees")


def test_bleu_chrf_exact_match_rank_reference_above_corruptions():
    task = make_task("translation")
    samples = task.dataset("test", 30, seed=0)
    prompts, meta = [s.prompt for s in samples], [{**s.metadata, "reference": s.reference} for s in samples]
    reference = [s.reference for s in samples]
    reordered = [" ".join(reversed(r.split())) for r in reference]  # right words, SVO-ish order
    for spec in ("bleu", "chrf", "exact_match"):
        reward = make_reward(spec, task)
        good, bad = reward(prompts, reference, meta), reward(prompts, reordered, meta)
        assert np.allclose(good, 1.0) and bad.mean() < good.mean(), spec
    chrf = make_reward("chrf", task)
    one_word_wrong = [r.replace(r.split()[0], "zz", 1) for r in reference]
    assert chrf(prompts, reordered, meta).mean() < 1.0 and chrf(prompts, one_word_wrong, meta).mean() > 0.3


def test_source_target_file_loads_with_line_numbered_errors(tmp_path):
    path = tmp_path / "pairs.jsonl"
    rows = [{"source": "bonjour", "target": "hello"}, {"source": "merci", "target": "thanks", "domain": "chat"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    task = make_task("translation", data_files=str(path), test_files=str(path))
    sample = task.sample(np.random.default_rng(0), "train")
    assert sample.prompt in ("bonjour =", "merci =") and sample.reference in ("hello", "thanks")
    env = gym.make("llm_gym/Translation-v0", granularity="sequence", reward="chrf",
                   task_kwargs={"data_files": str(path), "test_files": str(path)})
    env.reset(seed=0)
    answer = env.unwrapped.engine.samples[0].reference
    _, reward, _, _, info = env.step(answer)
    assert reward == pytest.approx(1.0) and info["gold_reward"] == 1.0

    path.write_text(json.dumps(rows[0]) + "\n" + json.dumps({"source": "x"}) + "\n")
    with pytest.raises(DatasetError, match=r"pairs.jsonl line 2: row is missing field 'target'"):
        make_task("translation", data_files=str(path))
    path.write_text("{not json\n")
    with pytest.raises(DatasetError, match=r"pairs.jsonl line 1: invalid JSON"):
        make_task("translation", data_files=str(path))
