"""``llm-gym bench run|leaderboard|rescore|seal``: run a benchmark grid, then turn its records into a leaderboard.

Why two steps: running is slow, resumable and may happen on a cluster; the leaderboard is cheap
and is recomputed from the records file alone, so anyone holding the records can regenerate it.
Each bench subcommand is one options dataclass and one ``add_dataclass_command`` line in
``add_bench_subcommands``; a new one (e.g. re-scoring records) is added there the same way.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Literal

from benchmarks.leaderboard import write_leaderboard
from benchmarks.rescore import RescoreConfig, run_rescore
from benchmarks.runner import load_bench_config, pending_runs, plan_runs, run_benchmark
from benchmarks.seal import SealConfig, run_seal
from llm_gym.commands import add_dataclass_command


@dataclass
class BenchRunArguments:
    """Run every cell of a benchmark grid that has no record yet (rerunning resumes)."""

    config: str = field(metadata={"help": "grid YAML (see benchmarks/configs/)", "path": "file"})
    workers: int | None = field(default=None, metadata={"help": "runs in parallel (default: the grid's)"})
    backend: Literal["process", "ray"] | None = field(default=None, metadata={"help": "where runs execute (default: the grid's)"})
    records: str | None = field(default=None, metadata={"help": "results JSONL to append to (default: the grid's)", "path": "output"})
    output_dir: str | None = field(default=None, metadata={"help": "where run folders (checkpoints, logs) go (default: the grid's)", "path": "output"})
    seeds: list[int] | None = field(default=None, metadata={"help": "seeds to run, e.g. --seeds 0 1 2 (default: the grid's)"})
    threads_per_run: int | None = field(default=None, metadata={"help": "torch threads (and Ray CPUs) per run"})
    ray_address: str | None = field(default=None, metadata={"help": "Ray cluster address (default: start a local instance)"})
    dry_run: bool = field(default=False, metadata={"help": "list the runs to do and those already recorded, run nothing"})


@dataclass
class LeaderboardArguments:
    """Turn a records file into leaderboard.md, index.html and plots."""

    records: str = field(metadata={"help": "results JSONL", "path": "file"})
    output_dir: str = field(metadata={"help": "folder for the tables and plots", "path": "output"})
    reps: int = field(default=2000, metadata={"help": "bootstrap resamples"})
    seed: int = field(default=0, metadata={"help": "bootstrap seed"})
    reference: str = field(default="best-of-n", metadata={"help": "label prefix of the over-optimisation reference"})


def run_grid(args: BenchRunArguments) -> int:
    overrides = {"workers": args.workers, "backend": args.backend, "records": args.records, "out_dir": args.output_dir,
                 "seeds": args.seeds, "ray_address": args.ray_address, "threads_per_run": args.threads_per_run}
    config = load_bench_config(args.config, overrides)
    if args.dry_run:
        todo, done = pending_runs(plan_runs(config), config.records)
        for spec in done:
            print(f"done     {spec.describe()}")
        for spec in todo:
            print(f"to run   {spec.describe()}  -> {spec.out_dir}")
        print(f"{len(todo)} to run, {len(done)} already recorded in {config.records}")
        return 0
    summary = run_benchmark(config)
    print(f"{len(summary.completed)} runs recorded, {len(summary.skipped)} skipped (already recorded), "
          f"{len(summary.failed)} failed; records: {config.records}")
    for spec, _ in summary.failed:
        print(f"failed: {spec.describe()}")
    return 1 if summary.failed else 0


def leaderboard(args: LeaderboardArguments) -> int:
    paths = write_leaderboard(args.records, args.output_dir, reps=args.reps, seed=args.seed, reference=args.reference)
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


def add_bench_subcommands(subparsers: argparse._SubParsersAction) -> None:
    """The ``llm-gym bench`` subcommands, one line each."""
    add_dataclass_command(subparsers, "run", "run every grid cell without a record yet (rerunning resumes)", BenchRunArguments, run_grid)
    add_dataclass_command(subparsers, "leaderboard", "records -> leaderboard.md, index.html and plots", LeaderboardArguments, leaderboard)
    add_dataclass_command(subparsers, "rescore", "score stored evaluation rollouts with another reward, as a new column",
                          RescoreConfig, run_rescore)
    add_dataclass_command(subparsers, "seal", "gzip a finished board's records in place; it then takes no more runs",
                          SealConfig, run_seal)


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """``llm-gym bench``: the ``llm_gym.commands`` entry point."""
    bench = subparsers.add_parser("bench", help="benchmark grid (algorithms x envs x seeds) and leaderboard",
                                  description="Run benchmark grids and build leaderboards from their records.")
    add_bench_subcommands(bench.add_subparsers(dest="bench_command", required=True, metavar="SUBCOMMAND"))
