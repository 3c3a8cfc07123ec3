"""The suite's preparation logic: each stage runs once, in order, and is skipped when its output is done."""

from __future__ import annotations

import json
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
                  "algo_kwargs": {"algo": "grpo", "policy_dir": f"runs/sft-{env}", "lr": lr},
                  "env_kwargs": {"tokenizer": f"runs/sft-{env}"}}
        return RunRecord(algo=algo, env_id=f"llm_gym/{env.title()}-v0", seed=0, config=config, versions={},
                         git_commit="x", hardware={}, curve=[], final={"objective/gold_reward": 0.5}, wall_s=1.0)

    board = build_leaderboard([record("grpo", "sort", 1e-4), record("grpo", "reverse", 1e-4)], reps=10)
    assert [(row.label, row.envs) for row in board.overall] == [("grpo", 2)]
    board = build_leaderboard([record("grpo", "sort", 1e-4), record("grpo", "reverse", 3e-4)], reps=10)
    assert sorted(row.label.split("@")[0] for row in board.overall) == ["grpo", "grpo"]  # a real variant stays apart
