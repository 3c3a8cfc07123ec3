"""Results records: round trip, append atomicity under concurrent writers, torn lines, provenance."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import numpy as np
import pytest

from benchmarks.records import (
    REQUIRED_KEYS,
    RunRecord,
    append_record,
    config_hash,
    git_commit,
    hardware_info,
    package_versions,
    read_records,
)


def make_record(seed: int = 0, **overrides) -> RunRecord:
    fields = dict(
        algo="ppo", env_id="llm_gym/Arithmetic-v0", seed=seed, config={"budget": 64, "algo_kwargs": {"lr": 1e-3}},
        curve=[{"step": 0.0, "objective/gold_reward": 0.1}, {"step": 64.0, "objective/gold_reward": 0.4}],
        final={"objective/gold_reward": 0.5, "objective/reward": 0.7, "objective/kl": 0.2}, wall_s=1.5,
    )
    fields.update(overrides)
    return RunRecord(**fields)


def test_round_trip_one_json_object_per_line_with_the_conventional_keys(tmp_path):
    path = tmp_path / "r.jsonl"
    records = [make_record(seed) for seed in range(3)]
    for record in records:
        append_record(path, record)
    lines = path.read_text().splitlines()
    assert len(lines) == 3
    assert list(json.loads(lines[0])) == list(REQUIRED_KEYS)
    assert read_records(path) == records


def test_non_finite_and_numpy_metrics_are_stored_as_strict_json(tmp_path):
    path = tmp_path / "r.jsonl"
    record = make_record(final={"objective/kl": float("nan"), "value/explained_variance": float("-inf"),
                                "objective/reward": np.float32(0.25), "episode/length": np.int64(7)})
    append_record(path, record)
    raw = path.read_text()
    assert "NaN" not in raw and "Infinity" not in raw
    assert read_records(path)[0].final == {"objective/kl": None, "value/explained_variance": None,
                                           "objective/reward": 0.25, "episode/length": 7}


def test_unserialisable_values_name_the_type(tmp_path):
    with pytest.raises(TypeError, match="cannot store object in a results record"):
        append_record(tmp_path / "r.jsonl", make_record(config={"bad": object()}))


def _append_many(args) -> None:
    path, worker, count = args
    for i in range(count):
        # ~20 kB lines: far above the pipe-buffer size, where interleaving would show if writes were split.
        append_record(path, make_record(seed=worker * 1000 + i, curve=[{"step": float(s), "x": 0.5} for s in range(600)]))


def test_concurrent_appenders_never_interleave_or_lose_records(tmp_path):
    path = tmp_path / "r.jsonl"
    with ProcessPoolExecutor(4, mp_context=get_context("spawn")) as pool:
        list(pool.map(_append_many, [(path, w, 25) for w in range(4)]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a single torn or interleaved line would warn
        records = read_records(path)
    assert sorted(r.seed for r in records) == sorted(w * 1000 + i for w in range(4) for i in range(25))


def test_a_torn_line_is_skipped_with_a_warning_and_the_next_append_is_clean(tmp_path):
    path = tmp_path / "r.jsonl"
    append_record(path, make_record(0))
    with path.open("a") as f:
        f.write(make_record(1).to_json()[:40])  # a writer that crashed mid-line
    with pytest.warns(UserWarning, match=r"r\.jsonl:2: skipping invalid results record"):
        assert [r.seed for r in read_records(path)] == [0]
    append_record(path, make_record(2))
    with pytest.warns(UserWarning, match=r"r\.jsonl:2:"):
        assert [r.seed for r in read_records(path)] == [0, 2]


def test_a_record_missing_keys_is_reported_by_name(tmp_path):
    path = tmp_path / "r.jsonl"
    data = json.loads(make_record().to_json())
    del data["git_commit"], data["wall_s"]
    path.write_text(json.dumps(data) + "\n")
    with pytest.warns(UserWarning, match=r"missing keys \['git_commit', 'wall_s'\]"):
        assert read_records(path) == []


def test_missing_file_has_no_records(tmp_path):
    assert read_records(tmp_path / "nope.jsonl") == []


def test_a_recorded_model_name_or_path_is_absolute_when_local_and_a_hub_id_when_not(tmp_path, monkeypatch):
    """``--config`` reproduces a run from anywhere: the start model's local path is recorded absolute."""
    from agents.rl.config import RLConfig
    from agents.run_record import setup_config

    (tmp_path / "sft").mkdir()
    monkeypatch.chdir(tmp_path)
    recorded = setup_config(RLConfig(model_name_or_path="sft", ref_model_name_or_path="Qwen/Qwen2-0.5B"))
    assert recorded["model_name_or_path"] == str(tmp_path / "sft")
    assert recorded["ref_model_name_or_path"] == "Qwen/Qwen2-0.5B"


def test_config_hash_ignores_key_order_and_sees_values():
    assert config_hash({"a": 1, "b": {"c": 2, "d": 3}}) == config_hash({"b": {"d": 3, "c": 2}, "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})


def test_provenance_versions_git_and_hardware(tmp_path):

    versions = package_versions()
    assert versions["python"] == ".".join(map(str, sys.version_info[:3]))
    assert {"torch", "gymnasium", "numpy", "llm-gym"} <= set(versions)
    code = subprocess.run(["git", "log", "-1", "--format=%H", "--", ":(top)", ":(top,exclude)benchmarks/results"],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert git_commit().removesuffix("-dirty") == code
    assert git_commit(tmp_path) == "unknown"  # not a checkout
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run(git[:3] + ["init", "-q"], check=True)
    (repo / "f.txt").write_text("a")
    subprocess.run(git + ["add", "f.txt"], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "x"], check=True)
    clean = git_commit(repo)
    assert len(clean) == 40 and not clean.endswith("-dirty")
    # committing or changing results leaves the commit of the code, and its cleanliness, as they were
    (repo / "benchmarks" / "results").mkdir(parents=True)
    (repo / "benchmarks" / "results" / "records.jsonl").write_text("{}")
    subprocess.run(git + ["add", "benchmarks"], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "results"], check=True)
    (repo / "benchmarks" / "results" / "records.jsonl").write_text("{}\n{}")
    assert git_commit(repo) == clean
    # imported here, not with the module: the appender test's spawned workers import this module, and the
    # runner pulls in torch and the trainers (some 10 s per worker on a 2-core machine)
    from benchmarks.runner import check_clean_checkout

    check_clean_checkout(repo)
    (repo / "f.txt").write_text("b")
    assert git_commit(repo) == clean + "-dirty"
    with pytest.raises(RuntimeError, match="dirty checkout .* f.txt"):
        check_clean_checkout(repo)
    hardware = hardware_info()
    assert hardware["cpu"] and hardware["cpu_cores"] >= 1 and hardware["usable_cores"] >= 1
    assert "gpu" in hardware
