"""Summarisation: key facts, distractors, conciseness, ROUGE and document/summary JSONL files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llm_gym.rewards import make_reward
from llm_gym.tasks import make_task
from llm_gym.tasks.datasets import DatasetError


def test_gold_rewards_coverage_and_conciseness_and_punishes_distractors():
    task = make_task("summarization")
    sample = task.dataset("test", 1, seed=3)[0]
    meta = [{**sample.metadata, "reference": sample.reference}]
    name = sample.metadata["facts"][0]
    document = sample.prompt.split("\nsummary:")[0]

    def gold(summary: str) -> float:
        return float(task.verify([sample.prompt], [summary], meta)[0])

    assert gold(sample.reference) == 1.0
    assert gold(document) < 0.6  # copying the document: all facts, far too long, distractors included
    assert gold(f"{name}.") == 0.25  # concise but uninformative
    wrong = sample.reference + " " + " ".join(sample.metadata["distractors"])
    assert gold(wrong) < gold(sample.reference)


def test_reward_specs_rank_reference_first():
    task = make_task("summarization")
    samples = task.dataset("test", 20, seed=0)
    prompts, meta = [s.prompt for s in samples], [{**s.metadata, "reference": s.reference} for s in samples]
    reference = [s.reference for s in samples]
    copied = [p.split("\nsummary:")[0] for p in prompts]
    composite = make_reward(task.default_reward, task)
    for spec in ("rouge", "fact_coverage", "conciseness", task.default_reward):
        reward = make_reward(spec, task)
        assert np.allclose(reward(prompts, reference, meta), 1.0), spec
    assert composite(prompts, copied, meta).mean() < 0.8
    components = composite.score(prompts, copied, meta).components
    assert set(components) == {"rougeL", "fact_coverage", "conciseness"}
    assert components["fact_coverage"].mean() == 1.0 and components["conciseness"].mean() < 0.6


def test_document_summary_file_with_and_without_facts(tmp_path):
    path = tmp_path / "docs.jsonl"
    rows = [
        {"document": "The meeting moved to Friday. Lunch was good.", "summary": "Meeting moved to Friday."},
        {"document": "Sales rose 5% in May.", "summary": "Sales up 5% in May.", "facts": ["5", "may"]},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    task = make_task("summarization", data_files=str(path), test_fraction=0.0)
    samples = task.data.splits["train"]
    assert samples[0].metadata["facts"] == ["meeting", "moved", "friday"]
    meta = [{**s.metadata, "reference": s.reference} for s in samples]
    np.testing.assert_array_equal(task.verify([s.prompt for s in samples], [s.reference for s in samples], meta), 1.0)

    path.write_text(json.dumps({"document": "x", "summary": "y", "facts": "x"}) + "\n")
    with pytest.raises(DatasetError, match=r"docs.jsonl line 1: field 'facts' must be a list of strings"):
        make_task("summarization", data_files=str(path))
    path.write_text(json.dumps({"document": "x"}) + "\n")
    with pytest.raises(DatasetError, match=r"docs.jsonl line 1: row is missing field 'summary'"):
        make_task("summarization", data_files=str(path))
