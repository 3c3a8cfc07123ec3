"""The suite's preparation logic: each stage runs once, in order, and is skipped when its output is done."""

from __future__ import annotations

import collections
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from benchmarks import suite
from benchmarks.suite import SuiteConfig, env_tasks, prepare_env


def _config(tmp_path: Path) -> SuiteConfig:
    return SuiteConfig(tiny_dir=str(tmp_path / "tiny-{env}"), sft_dir=str(tmp_path / "sft-{env}"),
                       feedback_dir=str(tmp_path / "fb-{env}"), rm_dir=str(tmp_path / "rm-{env}"))


def _fake_stages(monkeypatch: pytest.MonkeyPatch, calls: list[str]) -> None:
    """Stand-ins that write what the real stages write last (the files prepare_env checks)."""

    def tiny(out, texts, kind, config):
        calls.append("tiny")
        Path(out).mkdir(parents=True)
        (Path(out) / "config.json").write_text("{}")

    def sft(config):
        calls.append("sft")
        assert Path(config.model_name_or_path, "config.json").is_file(), "SFT must start from the tiny model"
        Path(config.output_dir).mkdir(parents=True, exist_ok=True)
        (Path(config.output_dir) / suite.SFT_DONE).write_text(
            json.dumps({"initial": {"eval/accuracy": 0.0}, "final": {"eval/accuracy": 0.4}, "wall_s": 1.0}))
        (Path(config.output_dir) / "model.safetensors").write_text(f"weights of SFT run {calls.count('sft')}")

    def feedback(config, output_fn):
        calls.append("feedback")
        assert config.model_name_or_path.endswith("sft-sort") and config.env_id == "llm_gym/Sort-v0"

    def reward_model(config):
        calls.append("reward_model")
        Path(config.output_dir).mkdir(parents=True, exist_ok=True)
        (Path(config.output_dir) / suite.RM_DONE).write_text(json.dumps({"final": {"eval/accuracy": 0.8}, "wall_s": 2.0}))

    monkeypatch.setattr(suite, "save_tiny", tiny)
    monkeypatch.setattr(suite, "train_sft", sft)
    monkeypatch.setattr(suite, "collect_feedback", feedback)
    monkeypatch.setattr(suite, "train_reward_model", reward_model)


def test_prepare_runs_each_stage_once_then_skips_all(tmp_path, monkeypatch):
    calls: list[str] = []
    _fake_stages(monkeypatch, calls)
    config = _config(tmp_path)
    first = prepare_env(config, "sort", "sort", log=lambda _: None)
    assert calls == ["tiny", "sft", "feedback", "reward_model"]
    assert not (tmp_path / "tiny-sort.tmp").exists()  # built under a temporary name, then renamed
    assert first["sft_accuracy"] == {"initial": 0.0, "final": 0.4}
    assert first["reward_model_eval"] == {"eval/accuracy": 0.8}

    again = prepare_env(config, "sort", "sort", log=lambda _: None)
    assert calls == ["tiny", "sft", "feedback", "reward_model"]  # nothing reran
    assert set(again["stage_seconds_this_call"].values()) == {None}
    assert again["sft_accuracy"] == first["sft_accuracy"]


def test_prepare_redoes_only_the_unfinished_stages(tmp_path, monkeypatch):
    calls: list[str] = []
    _fake_stages(monkeypatch, calls)
    config = _config(tmp_path)
    prepare_env(config, "sort", "sort", log=lambda _: None)
    (tmp_path / "rm-sort" / suite.RM_DONE).unlink()  # a reward model interrupted before its last write
    calls.clear()
    prepare_env(config, "sort", "sort", log=lambda _: None)
    assert calls == ["feedback", "reward_model"]


def test_a_rebuilt_preparation_is_refused_by_its_digest(tmp_path, monkeypatch):
    """Deleting a preparation's directory rebuilds it; here the rebuild differs (as on a machine where
    training is not bitwise the same), and the suite must not resume the board on it."""
    calls: list[str] = []
    _fake_stages(monkeypatch, calls)
    config = _config(tmp_path)
    first = prepare_env(config, "sort", "sort", log=lambda _: None)
    assert first["sha256"]["sft"] == hashlib.sha256(b"weights of SFT run 1").hexdigest()
    assert first["sha256"]["reward_model"] is None  # the stand-in writes no weights: nothing to compare
    unchanged = prepare_env(config, "sort", "sort", log=lambda _: None)  # everything skipped: the same files
    suite.check_same_preparation("prepare/prep0/sort", first["sha256"], unchanged["sha256"])
    shutil.rmtree(tmp_path / "sft-sort")
    rebuilt = prepare_env(config, "sort", "sort", log=lambda _: None)
    with pytest.raises(ValueError, match=r"prepare/prep0/sort: the prepared files differ .*sft sha256 [0-9a-f]{12} -> "
                                         r"[0-9a-f]{12}.*restore the runs directory"):
        suite.check_same_preparation("prepare/prep0/sort", first["sha256"], rebuilt["sha256"])
    with pytest.raises(ValueError, match=r"sft sha256 [0-9a-f]{12} -> missing"):
        suite.check_same_preparation("prepare/prep0/sort", first["sha256"], {"sft": None})
    suite.check_same_preparation("prepare/prep0/sort", None, rebuilt["sha256"])  # first preparation: nothing recorded


@pytest.mark.parametrize("upto, stages", [("sft", ["tiny", "sft"]), ("feedback", ["tiny", "sft", "feedback"])])
def test_prepare_stops_where_asked(tmp_path, monkeypatch, upto, stages):
    """The tuning env needs its feedback (DPO's pairs) but no reward model; the PPO study needs only SFT."""
    calls: list[str] = []
    _fake_stages(monkeypatch, calls)
    info = prepare_env(_config(tmp_path), "sort", "sort", log=lambda _: None, upto=upto)
    assert calls == stages and info["reward_model_eval"] == {}


def test_env_tasks_rejects_envs_without_a_built_in_task():
    assert env_tasks(["llm_gym/Arithmetic-v0", {"id": "llm_gym/Sort-v0", "kwargs": {}}]) == {
        "arithmetic": "arithmetic", "sort": "sort"}
    with pytest.raises(ValueError, match="built-in tasks only; 'llm_gym/RG-leg_counting-v0'"):
        env_tasks(["llm_gym/RG-leg_counting-v0"])


def test_one_setting_on_several_envs_is_one_leaderboard_row():
    """The grid fills ``runs/sft-{env}`` per env; the leaderboard must still see one setting per algorithm."""
    from benchmarks.leaderboard import build_leaderboard
    from benchmarks.records import RunRecord

    def record(algo: str, env: str, lr: float) -> RunRecord:
        config = {"target": "agents.rl.policy_gradient:PolicyGradient", "budget": 8,
                  "algo_kwargs": {"algo": "grpo", "model_name_or_path": f"runs/sft-{env}", "learning_rate": lr},
                  "env_kwargs": {"tokenizer": f"runs/sft-{env}"}}
        return RunRecord(algo=algo, env_id=f"llm_gym/{env.title()}-v0", seed=0, config=config, versions={},
                         git_commit="x", hardware={}, curve=[], final={"objective/gold_reward": 0.5}, wall_s=1.0)

    board = build_leaderboard([record("grpo", "sort", 1e-4), record("grpo", "reverse", 1e-4)], reps=10)
    assert [(row.label, row.envs) for row in board.overall] == [("grpo", 2)]
    board = build_leaderboard([record("grpo", "sort", 1e-4), record("grpo", "reverse", 3e-4)], reps=10)
    assert sorted(row.label.split("@")[0] for row in board.overall) == ["grpo", "grpo"]  # a real variant stays apart


def _suite(tmp_path: Path, **overrides) -> SuiteConfig:
    return SuiteConfig(leaderboard_dir=str(tmp_path / "board"), tiny_dir=str(tmp_path / "p{prep}/tiny-{env}"),
                       sft_dir=str(tmp_path / "p{prep}/sft-{env}"), feedback_dir=str(tmp_path / "p{prep}/fb-{env}"),
                       rm_dir=str(tmp_path / "p{prep}/rm-{env}"), **{"allow_dirty": True, **overrides})


def test_board_grids_cover_tracks_preparations_and_the_from_scratch_track(tmp_path):
    from benchmarks.runner import load_bench_config, plan_runs

    config = _suite(tmp_path)
    bench = load_bench_config(config.bench_config)
    grids = suite.board_grids(config, bench, {"ppo": 3.0})
    assert sorted(grids) == ["grid/from-scratch", "grid/learned-rm/prep0", "grid/learned-rm/prep1",
                             "grid/verifier/prep0", "grid/verifier/prep1"]
    specs = {name: plan_runs(grid) for name, grid in grids.items()}
    rm_run = next(s for s in specs["grid/learned-rm/prep1"] if s.algo == "ppo" and s.env_id == "llm_gym/Sort-v0")
    assert rm_run.config["env_kwargs"]["reward"] == f"learned:path={tmp_path}/p1/rm-sort"
    assert rm_run.config["algo_kwargs"]["model_name_or_path"] == "runs/suite/prep1/sft-sort"
    assert rm_run.config["algo_kwargs"]["learning_rate"] == pytest.approx(9e-4)  # the tuned factor 3 x 3e-4
    assert rm_run.config["tags"] == {"track": "learned-rm", "prep": 1}
    assert all(s.config["env_kwargs"]["reward"] == "verifier" for s in specs["grid/verifier/prep0"])
    assert {s.algo for s in specs["grid/from-scratch"]} == {"sb3-ppo"}
    assert "sb3-ppo" not in {s.algo for s in specs["grid/verifier/prep0"]}
    per_cell = [s for s in specs["grid/verifier/prep0"] if s.algo == "grpo" and s.env_id == "llm_gym/Sort-v0"]
    assert [s.seed for s in per_cell] == [0, 1, 2, 3, 4]  # >= 5 seeds per cell, per preparation
    assert all(grid.require_clean is False for grid in grids.values())  # allow_dirty=True in _suite
    assert suite.board_grids(SuiteConfig(), bench, {})["grid/verifier/prep0"].require_clean


def test_tuning_grid_gives_every_tuned_algorithm_the_same_budget_and_the_best_factor_wins(tmp_path):
    from benchmarks.records import RunRecord, append_record
    from benchmarks.runner import load_bench_config, plan_runs

    config = _suite(tmp_path)
    bench = load_bench_config(config.bench_config)
    grid = suite.tuning_grid(config, bench)
    specs = plan_runs(grid)
    assert {s.env_id for s in specs} == {config.tuning_env} and config.tuning_env not in bench.envs
    runs_per_algo = {}
    for s in specs:
        runs_per_algo.setdefault(s.algo.split("@")[0], []).append(s.config["budget"])
    assert set(runs_per_algo) == {"grpo", "rloo", "reinforce", "ppo", "dapo", "gspo", "reinforce++", "dpo",
                                  "sb3-ppo"}  # best-of-n has no learning rate
    assert {len(b) for b in runs_per_algo.values()} == {len(config.tuning_lr_factors) * len(config.tuning_seeds)}
    # the same multiple of each algorithm's board budget: the shared one, or DPO's own (pairs)
    multiple = config.tuning_budget / bench.budget
    for label, budgets in runs_per_algo.items():
        assert set(budgets) == {multiple * int(bench.algorithms[label].get("budget", bench.budget))}
    assert set(runs_per_algo["ppo"]) == {config.tuning_budget} and runs_per_algo["dpo"] != runs_per_algo["ppo"]
    # gold at (board budget, twice it) per factor. ppo: factor 3 best at both; grpo: factors 1 and 3 tie at
    # the budget -> the factor nearer 1; rloo: factor 3 is best at twice the budget but worst at the budget
    golds = {"ppo": {0.3: (0.05, 0.1), 1.0: (0.1, 0.2), 3.0: (0.2, 0.4)},
             "grpo": {0.3: (0.05, 0.1), 1.0: (0.15, 0.3), 3.0: (0.15, 0.3)},
             "rloo": {0.3: (0.1, 0.2), 1.0: (0.3, 0.35), 3.0: (0.05, 0.5)}}
    dpo_final = {0.3: 0.1, 1.0: 0.2, 3.0: 0.3}  # offline: no curve, picked by final gold
    for s in specs:
        label, factor = s.algo.split("@lr*")
        at_budget, at_end = golds.get(label, {}).get(float(factor), (0.0, 0.0))
        curve = [{"step": 0.0, "objective/gold_reward": 0.0},
                 {"step": 0.7 * bench.budget, "objective/gold_reward": 0.9},  # before the window: ignored
                 {"step": 0.8 * bench.budget, "objective/gold_reward": at_budget},
                 {"step": bench.budget, "objective/gold_reward": at_budget},
                 {"step": 2 * bench.budget, "objective/gold_reward": at_end}]
        final = dpo_final[float(factor)] if label == "dpo" else at_end
        append_record(grid.records, RunRecord(s.algo, s.env_id, s.seed, s.config, curve=[] if label == "dpo" else curve,
                                              final={"objective/gold_reward": final}))
    factors = suite.best_factors(grid.records, bench)
    assert factors["ppo"] == 3.0 and factors["grpo"] == 1.0 and factors["rloo"] == 1.0 and factors["dpo"] == 3.0
    evidence = suite.budget_evidence(grid.records, factors, bench)
    assert evidence["ppo"]["gain_reached"] == pytest.approx(0.5)  # half the gain by the board budget: not converged


def test_rm_sweep_grids_use_one_reward_model_per_amount_of_feedback(tmp_path):
    from benchmarks.runner import load_bench_config, plan_runs

    config = _suite(tmp_path)
    grids = suite.rm_sweep_grids(config, load_bench_config(config.bench_config))
    assert len(grids) >= 3
    rewards = {plan_runs(g)[0].config["env_kwargs"]["reward"] for g in grids.values()}
    assert rewards == {f"learned:path={tmp_path}/p0/rm-sweep{n}-sort" for n in config.rm_sweep_feedback}
    assert {g.tags["feedback"] for g in grids.values()} == set(config.rm_sweep_feedback)
    with pytest.raises(ValueError, match=r"rm_sweep_algorithms \['nope'\] are not labels"):
        suite.rm_sweep_grids(_suite(tmp_path, rm_sweep_algorithms=["nope"]), load_bench_config(config.bench_config))


def test_run_suite_records_progress_per_stage_and_a_rerun_resumes(tmp_path, monkeypatch):
    prepared, grids = [], []
    digests = collections.defaultdict(lambda: "a" * 64, {(1, "sort"): "b" * 64})

    def fake_prepare(config, env, task, log, prep=0, **extra):
        prepared.append((prep, env, extra.get("feedback_prompts")))
        return {"sft_accuracy": {"final": 0.5}, "reward_model_eval": {}, "sft_wall_s": 1.0, "reward_model_wall_s": 1.0,
                "sha256": {"sft": digests[(prep, env)]}}

    def fake_run(grid, log, on_run=None):
        from benchmarks.runner import BenchSummary

        grids.append(grid.tags)
        return BenchSummary()

    monkeypatch.setattr(suite, "prepare_env", fake_prepare)
    monkeypatch.setattr(suite, "run_benchmark", fake_run)
    config = _suite(tmp_path, stages=["prepare", "grid", "rm_sweep", "leaderboard"], preps=[0, 1])
    assert suite.run_suite(config, log=lambda _: None) == 0
    progress = json.loads((tmp_path / "board" / suite.PROGRESS_FILE).read_text())
    stages = progress["stages"]
    assert {"prepare/prep0/sort", "prepare/prep1/sort", "prepare/prep0/copy", "prepare/prep0/sort/feedback128",
            "grid/verifier/prep1", "grid/from-scratch", "rm_sweep/feedback2048"} <= set(stages)
    assert all(s["status"] == "done" and s["wall_s"] >= 0 and s["finished_at"] for s in stages.values())
    assert len(progress["commit"]) >= 40
    assert {"track": "learned-rm", "prep": 1} in grids and len(grids) == 5 + 3
    # Rerun: the wall times add up across calls, nothing is lost.
    assert suite.run_suite(config, log=lambda _: None) == 0
    again = json.loads((tmp_path / "board" / suite.PROGRESS_FILE).read_text())["stages"]
    assert again["grid/from-scratch"]["wall_s"] >= stages["grid/from-scratch"]["wall_s"]
    assert again["prepare/prep1/sort"]["sha256"] == {"sft": "b" * 64}
    # A preparation rebuilt differently since: the rerun stops before any grid runs on it.
    digests[(1, "sort")] = "c" * 64
    grids.clear()
    with pytest.raises(ValueError, match="prepare/prep1/sort: the prepared files differ"):
        suite.run_suite(config, log=lambda _: None)
    assert grids == []


def test_an_interrupted_grid_keeps_the_time_of_its_finished_runs(tmp_path, monkeypatch):
    """The grid records its time after every run, so a stage killed mid-way (Ctrl-C here; a lost machine
    alike) still counts what it did, and the call that finishes it adds its own time on top."""
    clock = iter(range(0, 1000, 10))
    monkeypatch.setattr(suite.time, "perf_counter", lambda: float(next(clock)))

    def interrupted_run(grid, log, on_run=None):
        on_run(None)
        on_run(None)
        raise KeyboardInterrupt

    monkeypatch.setattr(suite, "run_benchmark", interrupted_run)
    config = _suite(tmp_path, stages=["grid"], tracks=["verifier"], from_scratch=[])
    with pytest.raises(KeyboardInterrupt):
        suite.run_suite(config, log=lambda _: None)
    stage = json.loads((tmp_path / "board" / suite.PROGRESS_FILE).read_text())["stages"]["grid/verifier/prep0"]
    assert stage["status"] == "running" and stage["wall_s"] == 20.0  # two runs, 10 s apart on the fake clock

    def finishing_run(grid, log, on_run=None):
        from benchmarks.runner import BenchSummary

        on_run(None)
        return BenchSummary()

    monkeypatch.setattr(suite, "run_benchmark", finishing_run)
    assert suite.run_suite(config, log=lambda _: None) == 0
    stage = json.loads((tmp_path / "board" / suite.PROGRESS_FILE).read_text())["stages"]["grid/verifier/prep0"]
    assert stage["status"] == "done" and stage["wall_s"] == 20.0 + 20.0  # start, one run, end: 20 s more


def test_the_suite_refuses_records_from_another_commit_and_a_dirty_tree(tmp_path, monkeypatch):
    from benchmarks.records import RunRecord, append_record

    records = tmp_path / "board" / "records.jsonl"
    append_record(records, RunRecord("ppo", "llm_gym/Sort-v0", 0, {}, git_commit="0" * 40))
    with pytest.raises(RuntimeError, match=r"holds runs from other commit\(s\) \['0000000000000000000000000000000000000000'\]"):
        suite.check_records_commit(records, _suite(tmp_path))
    assert suite.check_records_commit(records, _suite(tmp_path, allow_mixed_commits=True))
    monkeypatch.setattr(suite, "check_clean_checkout", lambda: (_ for _ in ()).throw(RuntimeError("dirty checkout")))
    with pytest.raises(RuntimeError, match="dirty checkout"):
        suite.check_records_commit(records, _suite(tmp_path, allow_dirty=False, allow_mixed_commits=True))
    with pytest.raises(ValueError, match=r"unknown stage\(s\) \['train'\]"):
        suite.run_suite(_suite(tmp_path, stages=["train"]))


def test_a_board_resumes_only_with_the_setup_it_was_started_with(tmp_path, monkeypatch):
    import yaml

    monkeypatch.setattr(suite, "run_benchmark", lambda grid, log, on_run=None: _no_runs())
    saved = tmp_path / "board" / suite.SUITE_CONFIG_FILE
    started = _suite(tmp_path, stages=["tune"], tuning_seeds=[0, 1], workers=2)
    monkeypatch.setattr(suite, "best_factors", lambda records, bench: {})
    monkeypatch.setattr(suite, "budget_evidence", lambda records, factors, bench: {})
    assert suite.run_suite(started, log=lambda _: None) == 0
    assert yaml.safe_load(saved.read_text())["tuning_seeds"] == [0, 1]
    # How a call runs may change (stages, workers); the saved stages become all those run so far.
    assert suite.run_suite(_suite(tmp_path, stages=["grid"], tuning_seeds=[0, 1], workers=1), log=lambda _: None) == 0
    assert yaml.safe_load(saved.read_text())["stages"] == ["tune", "grid"]
    # What the board is may not: a third tuning seed would pool runs of two setups.
    before = saved.read_text()
    refused = r"started with tuning_seeds=\[0, 1\], and this call has tuning_seeds=\[0, 1, 2\]"
    with pytest.raises(ValueError, match=refused):
        suite.run_suite(_suite(tmp_path, stages=["grid"], tuning_seeds=[0, 1, 2]), log=lambda _: None)
    # Rendering the page alone checks and writes nothing: any defaults may draw an old board.
    suite.run_suite(_suite(tmp_path, stages=["leaderboard"], tuning_seeds=[0, 1, 2]), log=lambda _: None)
    assert saved.read_text() == before


def test_a_dry_run_counts_each_stages_recorded_runs_without_running_any(tmp_path, monkeypatch):
    from benchmarks.records import RunRecord, append_record
    from benchmarks.runner import plan_runs

    monkeypatch.setattr(suite, "run_benchmark", lambda *a, **k: pytest.fail("a dry run must run nothing"))
    config = _suite(tmp_path, stages=["tune", "grid"], tracks=["verifier"], preps=[0], dry_run=True)
    tuning = suite.tuning_grid(config, suite.load_bench_config(config.bench_config))
    for spec in plan_runs(tuning)[:3]:
        append_record(tuning.records, RunRecord(spec.algo, spec.env_id, spec.seed, spec.config, hardware={"cpu": "CPU X"}))
    monkeypatch.setattr(suite, "hardware_info", lambda: {"cpu": "CPU Y"})
    lines: list[str] = []
    assert suite.run_suite(config, log=lines.append) == 0
    planned = len(plan_runs(tuning))
    assert lines[0] == f"tune: 3 of {planned} runs recorded"
    assert lines[1].startswith("grid/verifier/prep0: 0 of ") and lines[-1].startswith("all grid stages: 3 of ")
    assert lines[-2].startswith("runs recorded on: CPU X; this machine: CPU Y (a preparation rebuilt on another CPU")
    assert not (tmp_path / "board" / suite.SUITE_CONFIG_FILE).exists()  # a dry run records nothing


def _no_runs():
    from benchmarks.runner import BenchSummary

    return BenchSummary()


def test_every_suite_field_has_help():
    import dataclasses

    assert all(f.metadata.get("help") for f in dataclasses.fields(SuiteConfig))


def test_a_refused_call_leaves_the_boards_directory_as_it_was(tmp_path, monkeypatch):
    """Refusals (another commit's records, another setup, a sealed board) all come before the first write."""
    from benchmarks.records import RunRecord, append_record

    monkeypatch.setattr(suite, "run_benchmark", lambda grid, log, on_run=None: _no_runs())
    board = tmp_path / "board"
    assert suite.run_suite(_suite(tmp_path, stages=["grid"], tracks=["verifier"], from_scratch=[]), log=lambda _: None) == 0
    append_record(board / "records.jsonl", RunRecord("ppo", "llm_gym/Sort-v0", 0, {}, git_commit="0" * 40))

    def snapshot() -> dict[str, bytes]:
        return {str(p.relative_to(board)): p.read_bytes() for p in sorted(board.rglob("*")) if p.is_file()}

    before = snapshot()
    with pytest.raises(RuntimeError, match="holds runs from other commit"):
        suite.run_suite(_suite(tmp_path, stages=["grid"], tracks=["verifier"], from_scratch=[], dry_run=False,
                               workers=3), log=lambda _: None)
    assert snapshot() == before
    with pytest.raises(ValueError, match="started with seeds="):
        suite.run_suite(_suite(tmp_path, stages=["grid"], seeds=[9]), log=lambda _: None)
    assert snapshot() == before


def test_a_sealed_board_takes_no_runs_but_renders(tmp_path, monkeypatch):
    from benchmarks.records import RunRecord, append_record
    from benchmarks.seal import SealConfig, seal_board

    monkeypatch.setattr(suite, "run_benchmark", lambda grid, log, on_run=None: _no_runs())
    monkeypatch.setattr(suite, "check_records_commit", lambda records, config: "c" * 40)
    board = tmp_path / "board"
    assert suite.run_suite(_suite(tmp_path, stages=["grid"], tracks=["verifier"], from_scratch=[]), log=lambda _: None) == 0
    append_record(board / "records.jsonl", RunRecord("ppo", "llm_gym/Sort-v0", 0, {}, git_commit="c" * 40))
    seal_board(SealConfig(board_dir=str(board)))
    before = sorted(p.name for p in board.iterdir())
    for stages in (["grid"], ["tune"], ["prepare"], ["rm_sweep"]):
        with pytest.raises(ValueError, match=r"holds a sealed board \(records.jsonl.gz\), which takes no more runs"):
            suite.run_suite(_suite(tmp_path, stages=stages, tracks=["verifier"], from_scratch=[]), log=lambda _: None)
    assert sorted(p.name for p in board.iterdir()) == before
    rendered = []
    monkeypatch.setattr(suite, "write_leaderboard", lambda records, out: rendered.append(Path(records).name) or {
        "markdown": "md", "html": "html"})
    assert suite.run_suite(_suite(tmp_path, stages=["leaderboard"]), log=lambda _: None) == 0
    assert rendered == ["records.jsonl.gz"]

