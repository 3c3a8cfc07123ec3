"""Benchmark runner: grid planning, resumption (skip done, rerun deleted), failures, CLI, Ray backend.

The runs use ``fake_algorithms.FakeAlgorithm``: it trains nothing, but logs every call so the tests can
count which runs really executed.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import yaml

from llm_gym.cli import main as cli_main
from benchmarks.records import append_record, read_records
from benchmarks import runner
from benchmarks.execution import build_algorithm, execute_run, thin_curve
from benchmarks.rollouts import read_rollouts, record_rollouts
from benchmarks.runner import (
    check_clean_checkout,
    load_bench_config,
    pending_runs,
    plan_runs,
    run_benchmark,
)

ENVS = ["llm_gym/Copy-v0", "llm_gym/Reverse-v0"]
FAKE = "fake_algorithms:FakeAlgorithm"
FAKE_ROLLOUTS = "fake_algorithms:FakeRolloutAlgorithm"


def write_config(tmp_path: Path, **overrides) -> Path:
    config = {
        "algorithms": {"fake": {"algo": "fake", "kwargs": {"calls_log": str(tmp_path / "calls.jsonl")}}},
        "registry": {"fake": FAKE},
        "envs": ENVS,
        "seeds": [0, 1],
        "budget": 8,
        "eval_episodes": 4,
        "records": str(tmp_path / "records.jsonl"),
        "out_dir": str(tmp_path / "runs"),
        "workers": 2,
    }
    config.update(overrides)
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def calls(tmp_path: Path) -> list[tuple[str, int]]:
    path = tmp_path / "calls.jsonl"
    return sorted((c["env_id"], c["seed"]) for c in map(json.loads, path.read_text().splitlines())) if path.exists() else []


def run_cli(config_path: Path, *flags: str) -> int:
    """``llm-gym bench run`` through the real command line (the ``llm_gym.commands`` entry point)."""
    return cli_main(["bench", "run", "--config", str(config_path), *flags])


def test_rerun_skips_finished_runs_and_deleting_a_record_reruns_only_that_run(tmp_path, capsys):
    config_path = write_config(tmp_path)
    assert run_cli(config_path) == 0
    grid = sorted((env, seed) for env in ENVS for seed in (0, 1))
    assert calls(tmp_path) == grid
    records_path = tmp_path / "records.jsonl"
    records = read_records(records_path)
    assert sorted((r.env_id, r.seed) for r in records) == grid
    pids = {json.loads(line)["pid"] for line in (tmp_path / "calls.jsonl").read_text().splitlines()}
    assert os.getpid() not in pids and len(pids) == 4  # each run in its own fresh process

    record = next(r for r in records if r.env_id == ENVS[1] and r.seed == 1)
    assert record.final["objective/gold_reward"] == pytest.approx(0.51)
    assert (record.final["eval/episodes"], record.final["eval/seed"], record.final["eval/test_split"]) == (4, 10_001, 1)
    assert [p["step"] for p in record.curve] == [0, 4, 8]
    assert record.versions["torch"] and record.git_commit != "" and record.hardware["cpu_cores"] >= 1
    assert record.wall_s > 0 and record.config["budget"] == 8 and record.config["target"] == FAKE

    # Rerun: nothing left to do.
    assert run_cli(config_path) == 0
    assert "0 runs recorded, 4 skipped" in capsys.readouterr().out
    assert calls(tmp_path) == grid

    # Delete the record of one run: only that run executes again.
    lines = records_path.read_text().splitlines(keepends=True)
    keep = [line for line in lines if not (json.loads(line)["env_id"] == ENVS[1] and json.loads(line)["seed"] == 1)]
    assert len(keep) == 3
    records_path.write_text("".join(keep))
    assert run_cli(config_path, "--dry-run") == 0
    assert "1 to run, 3 already recorded" in capsys.readouterr().out
    assert run_cli(config_path) == 0
    assert calls(tmp_path) == sorted(grid + [(ENVS[1], 1)])
    assert sorted((r.env_id, r.seed) for r in read_records(records_path)) == grid

    # The leaderboard command reads the records back.
    out = tmp_path / "board"
    assert cli_main(["bench", "leaderboard", "--records", str(records_path), "--output_dir", str(out), "--reps", "200"]) == 0
    assert "| fake | 2 | 0.505 [0.500, 0.510]" in (out / "leaderboard.md").read_text()
    assert (out / "index.html").exists()


def test_changing_a_setting_reruns_only_the_runs_it_touches(tmp_path):
    base = load_bench_config(write_config(tmp_path))
    for spec in plan_runs(base):  # pretend the grid already ran
        append_record(base.records, _fake_record(spec))
    assert pending_runs(plan_runs(base), base.records)[0] == []
    changed = load_bench_config(write_config(tmp_path, envs=[ENVS[0], {"id": ENVS[1], "kwargs": {"max_new_tokens": 4}}]))
    todo, done = pending_runs(plan_runs(changed), changed.records)
    assert sorted((s.env_id, s.seed) for s in todo) == [(ENVS[1], 0), (ENVS[1], 1)]
    more_seeds = load_bench_config(write_config(tmp_path, seeds=[0, 1, 2]))
    assert [(s.env_id, s.seed) for s in pending_runs(plan_runs(more_seeds), base.records)[0]] == [(e, 2) for e in ENVS]


def _fake_record(spec):
    from benchmarks.records import RunRecord

    return RunRecord(algo=spec.algo, env_id=spec.env_id, seed=spec.seed, config=spec.config, final={"x": 1.0})


def test_a_failed_run_is_reported_and_the_others_are_recorded(tmp_path):
    config = load_bench_config(write_config(
        tmp_path, envs=ENVS[:1],
        algorithms={"fake": {"kwargs": {"calls_log": str(tmp_path / "calls.jsonl"), "fail_seed": 1}}}))
    logs: list[str] = []
    summary = run_benchmark(config, log=logs.append)
    assert [(r.env_id, r.seed) for r in summary.completed] == [(ENVS[0], 0)]
    [(spec, error)] = summary.failed
    assert spec.seed == 1 and "fake divergence at seed 1" in error
    assert any("FAILED" in line for line in logs)
    assert [r.seed for r in read_records(config.records)] == [0]  # a failed run leaves no record: it reruns


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"algorithms": {"nope": {}}}, "unknown algorithm 'nope'"),
        ({"seeds": [0, 0]}, "seeds must be a non-empty list without repeats"),
        ({"envs": [{"name": "x"}]}, "each entry of envs must be an env id"),
        ({"envs": [ENVS[0], ENVS[0]]}, "envs lists an env id twice"),
        ({"backend": "slurm"}, "unknown backend 'slurm'"),
        ({"algorithms": {"fake": {"kwarg": {}}}}, r"unknown keys \['kwarg'\]"),
        ({"registry": {"fake": "no_colon"}}, "must look like 'module:Class'"),
        ({"curve_points": 1}, "curve_points must be >= 2"),
    ],
)
def test_bad_grids_fail_before_anything_runs(tmp_path, change, message):
    config = load_bench_config(write_config(tmp_path, **change))
    with pytest.raises((ValueError, KeyError), match=message):
        plan_runs(config)


def test_bad_algorithm_arguments_and_targets_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"unknown FakeConfig field\(s\) \['lr'\]"):
        build_algorithm(FAKE, {"calls_log": "x", "lr": 1.0})
    with pytest.raises(ValueError, match="cannot build FakeConfig"):
        build_algorithm(FAKE, {"slope": 1.0})  # calls_log is required
    with pytest.raises(ImportError, match="cannot import module 'no_such_module'"):
        build_algorithm("no_such_module:Algo", {})
    with pytest.raises(ImportError, match="has no attribute 'Nope'"):
        build_algorithm("fake_algorithms:Nope", {})
    with pytest.raises(TypeError, match="does not implement the Algorithm protocol"):
        build_algorithm("fake_algorithms:FakeConfig", {})
    config = load_bench_config(write_config(tmp_path, envs=["llm_gym/NoSuchTask-v0"]))
    with pytest.raises(KeyError, match="unknown env id 'llm_gym/NoSuchTask-v0'"):
        run_benchmark(config, log=lambda _: None)
    with pytest.raises(ValueError, match=r"unknown benchmark config field\(s\) \['worker'\]"):
        load_bench_config(write_config(tmp_path, worker=2))


def test_builtin_registry_builds_the_agents(tiny_model_dir):
    """Every registry name constructs its class from flat kwargs (skipped for agents not in this checkout)."""
    from benchmarks.runner import ALGORITHMS

    extra = {"sb3-ppo": {}}
    for name, entry in ALGORITHMS.items():
        kwargs = {**entry.preset, **extra.get(name, {"model_name_or_path": str(tiny_model_dir)})}
        try:
            algorithm = build_algorithm(entry.target, kwargs)
        except ImportError as err:
            if "cannot import module" in str(err):
                continue
            raise
        assert callable(algorithm.train) and callable(algorithm.evaluate), name


def test_example_configs_plan_and_their_kwargs_fit_the_agents():
    """The shipped grids stay in sync with the agents' config dataclasses (built, not run)."""
    configs = sorted(Path(__file__).resolve().parents[1].glob("benchmarks/configs/*.yaml"))
    assert configs
    for path in configs:
        specs = plan_runs(load_bench_config(path))
        assert len({s.key for s in specs}) == len(specs)
        for spec in specs:
            try:
                algorithm = build_algorithm(spec.config["target"], spec.config["algo_kwargs"])
            except ImportError as err:  # an agent module missing from this checkout
                assert "cannot import module" in str(err)
                continue
            assert callable(algorithm.train), spec.describe()


def test_ray_backend_runs_the_grid_on_a_local_instance(tmp_path, monkeypatch):
    pytest.importorskip("ray")
    # Ray workers start from the driver's environment: make the stand-in algorithms' module importable there.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(Path(__file__).parent), *sys.path]))
    config = load_bench_config(write_config(tmp_path, envs=ENVS[:1], backend="ray"))
    summary = run_benchmark(config, log=lambda _: None)
    assert not summary.failed
    assert sorted(r.seed for r in read_records(config.records)) == [0, 1]
    assert run_benchmark(config, log=lambda _: None).completed == []  # resumable through Ray too


def test_a_real_algorithm_runs_through_the_grid_and_into_the_leaderboard(tmp_path):
    """SB3 PPO (a real ``Algorithm``, no SFT model needed) end to end: runner -> record -> leaderboard."""
    pytest.importorskip("agents.rl.sb3")
    config = load_bench_config(write_config(
        tmp_path, registry={}, envs=["llm_gym/Count-v0"], seeds=[0], budget=16, eval_episodes=16, workers=1,
        algorithms={"sb3-ppo": {"kwargs": {"num_envs": 8, "n_steps": 4, "batch_size": 32, "log_every": 8,
                                           "eval_episodes": 8, "d_model": 32}}}))
    summary = run_benchmark(config, log=lambda _: None)
    assert not summary.failed, summary.failed
    [record] = read_records(config.records)
    assert {"objective/reward", "objective/gold_reward", "objective/kl", "episode/length"} <= set(record.final)
    assert record.curve and all("step" in p for p in record.curve)
    out = tmp_path / "board"
    assert cli_main(["bench", "leaderboard", "--records", config.records, "--output_dir", str(out), "--reps", "100"]) == 0
    gold = record.final["objective/gold_reward"]
    assert f"| sb3-ppo | 1 | {gold:.3f} [{gold:.3f}, {gold:.3f}]" in (out / "leaderboard.md").read_text()


def test_env_kwargs_that_cannot_make_the_env_fail_before_any_worker_starts(tmp_path):
    config = load_bench_config(write_config(tmp_path, env_kwargs={"tokenizer": str(tmp_path / "missing-{env}")}))
    with pytest.raises(ValueError, match=r"cannot make llm_gym/Copy-v0 .*tokenizer directory not found: .*missing-copy"):
        run_benchmark(config, log=lambda _: None)
    assert not (tmp_path / "calls.jsonl").exists()


def test_a_run_whose_metrics_break_the_protocol_is_an_error_naming_the_metric(tmp_path):
    def spec(**kwargs):
        config = load_bench_config(write_config(tmp_path, envs=ENVS[:1], seeds=[0], threads_per_run=2, algorithms={
            "fake": {"kwargs": {"calls_log": str(tmp_path / "calls.jsonl"), **kwargs}}}))
        return plan_runs(config)[0]

    record = execute_run(spec(extra={"eval/nan": float("nan"), "eval/none": None}))  # in-process: same code as a worker
    assert record.final["eval/none"] is None and record.final["eval/nan"] != record.final["eval/nan"]
    with pytest.raises(TypeError, match="metric 'eval/text' is not a number: 'oops'"):
        execute_run(spec(extra={"eval/text": "oops"}))
    with pytest.raises(ValueError, match="curve points without a 'step' key"):
        execute_run(spec(drop_step=True))


def test_tags_fill_placeholders_and_runs_store_their_rollouts_and_evaluate_on_their_own_seed(tmp_path):
    def grid(prep):
        return load_bench_config(write_config(
            tmp_path, registry={"fake": FAKE_ROLLOUTS}, envs=ENVS[:1], workers=1, tags={"track": "verifier", "prep": prep},
            algorithms={"fake": {"kwargs": {"calls_log": str(tmp_path / "calls-prep{prep}-{env}.jsonl")}}}))

    config = grid(1)
    specs = plan_runs(config)
    assert specs[0].config["algo_kwargs"]["calls_log"] == str(tmp_path / "calls-prep1-copy.jsonl")
    assert specs[0].config["tags"] == {"track": "verifier", "prep": 1}
    other_prep = plan_runs(grid(2))
    assert other_prep[0].config["variant"] == specs[0].config["variant"]  # one leaderboard row across preparations
    assert other_prep[0].key != specs[0].key  # ... but separate runs
    assert not run_benchmark(config, log=lambda _: None).failed
    records = sorted(read_records(config.records), key=lambda r: r.seed)
    assert [r.final["eval/seed"] for r in records] == [10_000, 10_001]  # fresh evaluation samples per seed
    for record in records:
        rows = read_rollouts(record_rollouts(tmp_path / "rollouts", record))  # beside the records file
        assert len(rows) == 4 and rows[0]["completion"] == "x" * (1 + int(record.final["eval/seed"]) % 4)


def test_require_clean_refuses_a_dirty_checkout(tmp_path, monkeypatch):
    import subprocess

    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    (repo / "a.py").write_text("x = 1\n")
    subprocess.run(git + ["add", "a.py"], cwd=repo, check=True)
    subprocess.run(git + ["commit", "-qm", "init"], cwd=repo, check=True)
    assert len(check_clean_checkout(repo)) == 40
    (repo / "a.py").write_text("x = 2\n")
    with pytest.raises(RuntimeError, match=r"refusing to record benchmark runs from a dirty checkout .*M a.py"):
        check_clean_checkout(repo)
    with pytest.raises(RuntimeError, match="outside a git checkout"):
        check_clean_checkout(tmp_path)
    monkeypatch.setattr(runner, "check_clean_checkout", lambda: (_ for _ in ()).throw(RuntimeError("dirty")))
    with pytest.raises(RuntimeError, match="dirty"):
        run_benchmark(load_bench_config(write_config(tmp_path, require_clean=True)), log=lambda _: None)
    assert not (tmp_path / "calls.jsonl").exists()


def test_thin_curve_keeps_evenly_spaced_logged_points_with_the_first_and_the_last():
    points = [{"step": 64 * i} for i in range(257)]
    kept = thin_curve(points, 5)
    assert [p["step"] for p in kept] == [0, 64 * 64, 64 * 128, 64 * 192, 64 * 256]
    assert thin_curve(points, None) == points and thin_curve(points[:3], 5) == points[:3]
    assert len(thin_curve(points, 128)) == 128 and len({id(p) for p in thin_curve(points, 128)}) == 128


def test_curve_points_caps_the_recorded_curve(tmp_path):
    config_path = write_config(tmp_path, curve_points=2)
    assert run_cli(config_path) == 0
    records = read_records(tmp_path / "records.jsonl")
    assert records and all([p["step"] for p in r.curve] == [0, 8] and r.config["curve_points"] == 2 for r in records)
