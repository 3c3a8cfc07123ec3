"""Re-scoring stored rollouts: a tiny recorded grid is rescored with another reward spec, end to end."""

from __future__ import annotations

import numpy as np
import pytest
from test_leaderboard import markdown_tables, parse_ci
from test_runner import ENVS, FAKE_ROLLOUTS, write_config

from benchmarks.leaderboard import write_leaderboard
from benchmarks.records import read_records
from benchmarks.rescore import RescoreConfig, read_rescores, rescore, score_rows
from benchmarks.rollouts import read_rollouts, record_rollouts
from benchmarks.runner import load_bench_config, run_benchmark


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("grid")
    config = load_bench_config(write_config(tmp_path, registry={"fake": FAKE_ROLLOUTS}, workers=1))
    assert not run_benchmark(config, log=lambda _: None).failed
    return tmp_path, config


def test_rescore_writes_a_column_the_leaderboard_shows_and_is_resumable(recorded):
    tmp_path, config = recorded
    spec = "length:max_chars=2"  # 1.0 for completions of at most 2 characters
    summary = rescore(RescoreConfig(reward=spec, column="short", records=config.records, batch_size=3), log=lambda _: None)
    records = read_records(config.records)
    assert len(summary.scored) == len(records) == 4 and not summary.missing
    for line in summary.scored:  # each value is the mean reward of that run's stored completions, recomputed here
        record = next(r for r in records if (r.algo, r.env_id, r.seed) == (line["algo"], line["env_id"], line["seed"]))
        rows = read_rollouts(record_rollouts(tmp_path / "rollouts", record))
        assert line["value"] == pytest.approx(np.mean([len(r["completion"]) <= 2 for r in rows]))
        assert line["episodes"] == len(rows) == 4

    again = rescore(RescoreConfig(reward=spec, column="short", records=config.records), log=lambda _: None)
    assert again.scored == [] and again.skipped == 4  # resumable: nothing scored twice
    assert len(read_rescores(tmp_path / "rescores.jsonl")) == 4
    with pytest.raises(ValueError, match="column 'short' .* already holds scores from reward 'length:max_chars=2'"):
        rescore(RescoreConfig(reward="length:max_chars=3", column="short", records=config.records), log=lambda _: None)

    paths = write_leaderboard(config.records, tmp_path / "board", reps=200)
    table = markdown_tables(paths["markdown"].read_text())[ENVS[0]]
    lines = [line for line in summary.scored if line["env_id"] == ENVS[0]]
    point = parse_ci(table[0]["Rescored: short, mean"])[0]
    assert point == pytest.approx(np.mean([line["value"] for line in lines]), abs=6e-4)


def test_runs_without_stored_rollouts_are_reported_and_bad_inputs_named(recorded, tmp_path):
    _, config = recorded
    summary = rescore(RescoreConfig(reward="length", column="x", records=config.records, rollouts_dir=str(tmp_path),
                                    rescores_file=str(tmp_path / "r.jsonl")), log=lambda _: None)
    assert summary.scored == [] and len(summary.missing) == 4 and "fake on llm_gym/Copy-v0 seed=0" in summary.missing
    with pytest.raises(ValueError, match="column must be letters, digits"):
        rescore(RescoreConfig(reward="length", column="a b", records=config.records), log=lambda _: None)
    with pytest.raises(ValueError, match=r"cannot build reward 'nope' for llm_gym/.*unknown reward spec 'nope'"):
        rescore(RescoreConfig(reward="nope", column="n", records=config.records, rescores_file=str(tmp_path / "n.jsonl")),
                log=lambda _: None)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        score_rows(lambda p, c, m: np.zeros(len(c)), [{"prompt": "", "completion": ""}], 0)


def test_score_rows_batches_the_reward_calls():
    sizes = []

    def reward(prompts, completions, metadata):
        sizes.append(len(completions))
        return np.array([len(c) for c in completions], dtype=float)

    rows = [{"prompt": "p", "completion": "x" * i} for i in range(7)]
    assert score_rows(reward, rows, 3).tolist() == list(range(7))
    assert sizes == [3, 3, 1]


def test_every_config_field_has_help():
    from dataclasses import fields

    assert all(f.metadata.get("help") for f in fields(RescoreConfig))


def test_the_readme_rescore_command_runs(recorded):
    import re
    import shlex
    from pathlib import Path

    from llm_gym.cli import main

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    command = re.search(r"`(llm-gym bench rescore [^`]*)`", readme.replace("\n", " ")).group(1)
    argv = shlex.split(command)[1:]
    tmp_path, config = recorded
    argv[argv.index("--records") + 1] = config.records  # the tiny stored grid instead of the committed board
    assert main(argv) == 0
    assert {line["column"] for line in read_rescores(tmp_path / "rescores.jsonl")} >= {"len8"}


def test_a_spec_that_needs_stored_metadata_fails_naming_the_file_and_the_cause(recorded, tmp_path):
    _, config = recorded
    with pytest.raises(ValueError, match=r"seed0-.*\.jsonl\.gz: reward 'exact_match' failed .* store no 'metadata'"):
        rescore(RescoreConfig(reward="exact_match", column="em", records=config.records,
                              rescores_file=str(tmp_path / "em.jsonl")), log=lambda _: None)


def test_a_sealed_board_is_rescored_by_its_directory_to_the_same_values(recorded, tmp_path):
    import shutil

    from benchmarks.seal import SealConfig, seal_board

    grid_dir, config = recorded
    plain = rescore(RescoreConfig(reward="length:max_chars=2", column="plain", records=config.records,
                                  rescores_file=str(tmp_path / "plain.jsonl")), log=lambda _: None)
    board = tmp_path / "board"
    shutil.copytree(grid_dir, board, ignore=shutil.ignore_patterns("rescores.jsonl"))
    seal_board(SealConfig(board_dir=str(board)))
    sealed = rescore(RescoreConfig(reward="length:max_chars=2", column="plain", records=str(board)), log=lambda _: None)
    assert [line["value"] for line in sealed.scored] == [line["value"] for line in plain.scored]
    assert len(read_rescores(board / "rescores.jsonl")) == len(plain.scored) == 4
