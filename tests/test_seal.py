"""Sealing a finished board: its records gzip-compressed in place, byte for byte, and closed to new runs."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest
import yaml

from benchmarks.records import RunRecord, append_record, read_records, records_file
from benchmarks.seal import SealConfig, main, seal_board


def _board(root: Path, status: str = "done") -> Path:
    board = root / "board"
    for i, algo in enumerate(["ppo", "grpo", "best-of-n_4"]):
        curve = [{"step": 64 * k, "objective/gold_reward": 0.1 * k + 0.01 * i} for k in range(5)]
        append_record(board / "records.jsonl", RunRecord(algo, "llm_gym/Sort-v0", i, {"lr": 1e-3}, git_commit="c" * 40,
                                                         curve=curve, final={"objective/gold_reward": 0.3 + i / 10}))
    append_record(board / "tuning" / "records.jsonl", RunRecord("ppo@lr*0.3", "llm_gym/Copy-v0", 0, {}, git_commit="c" * 40))
    (board / "progress.json").write_text(json.dumps({"stages": {"tune": {"status": "done"}, "grid/verifier/prep0": {"status": status}}}))
    (board / "suite_config.yaml").write_text(yaml.safe_dump({"leaderboard_dir": "somewhere/else", "seeds": [0, 1]}))
    return board


def test_sealing_compresses_the_same_bytes_and_points_the_setup_at_the_board(tmp_path):
    board = _board(tmp_path)
    plain = {p: (board / p).read_bytes() for p in ("records.jsonl", "tuning/records.jsonl")}
    records = read_records(board / "records.jsonl")
    sealed = seal_board(SealConfig(board_dir=str(board)))
    assert [p.relative_to(board).as_posix() for p in sealed] == ["records.jsonl.gz", "tuning/records.jsonl.gz"]
    for name, data in plain.items():
        assert not (board / name).exists()
        assert gzip.decompress((board / (name + ".gz")).read_bytes()) == data
    assert records_file(board) == board / "records.jsonl.gz"
    assert read_records(records_file(board)) == records
    assert yaml.safe_load((board / "suite_config.yaml").read_text()) == {"leaderboard_dir": str(board), "seeds": [0, 1]}


def test_sealing_is_deterministic(tmp_path):
    first, second = _board(tmp_path / "a"), _board(tmp_path / "b")
    shutil.copyfile(first / "records.jsonl", second / "records.jsonl")  # records hold wall times: the same input
    seal_board(SealConfig(board_dir=str(first)))
    seal_board(SealConfig(board_dir=str(second)))
    assert (first / "records.jsonl.gz").read_bytes() == (second / "records.jsonl.gz").read_bytes()


def test_a_sealed_board_takes_no_appends_and_is_not_sealed_twice(tmp_path):
    board = _board(tmp_path)
    seal_board(SealConfig(board_dir=str(board)))
    with pytest.raises(ValueError, match="sealed records file and takes no more runs"):
        append_record(board / "records.jsonl.gz", RunRecord("ppo", "llm_gym/Sort-v0", 9, {}))
    with pytest.raises(ValueError, match="is already sealed"):
        seal_board(SealConfig(board_dir=str(board)))
    (board / "records.jsonl").write_text("")  # a runner pointed at the plain name would start a second file
    with pytest.raises(ValueError, match="holds both records.jsonl and records.jsonl.gz"):
        records_file(board)


def test_an_unfinished_board_is_refused_naming_the_stage(tmp_path):
    board = _board(tmp_path, status="running")
    with pytest.raises(ValueError, match=r"did not finish: grid/verifier/prep0 \(running\)"):
        seal_board(SealConfig(board_dir=str(board)))
    assert (board / "records.jsonl").is_file() and not (board / "records.jsonl.gz").exists()
    assert main(["--board_dir", str(board), "--allow_unfinished", "true"]) == 0
    assert (board / "records.jsonl.gz").is_file()


def test_an_empty_directory_has_nothing_to_seal(tmp_path):
    with pytest.raises(ValueError, match="holds no records.jsonl: nothing to seal"):
        seal_board(SealConfig(board_dir=str(tmp_path)))


def test_the_runner_refuses_pending_runs_into_sealed_records(tmp_path):
    from benchmarks.runner import load_bench_config, run_benchmark

    board = _board(tmp_path)
    seal_board(SealConfig(board_dir=str(board)))
    config = load_bench_config("benchmarks/configs/smoke.yaml", {"records": str(board / "records.jsonl.gz")})
    with pytest.raises(ValueError, match="sealed records file .* takes no more runs"):
        run_benchmark(config, log=lambda _: None)
