"""``llm-gym bench run|leaderboard``: run a benchmark grid, then turn its records into a leaderboard.

Why two steps: running is slow, resumable and may happen on a cluster; the leaderboard is cheap
and is recomputed from the records file alone, so anyone holding the records can regenerate it.
"""

from __future__ import annotations

import argparse

import yaml

from benchmarks.leaderboard import write_leaderboard
from benchmarks.runner import load_bench_config, pending_runs, plan_runs, run_benchmark


def _run(args: argparse.Namespace) -> int:
    overrides = {"workers": args.workers, "backend": args.backend, "records": args.records, "out_dir": args.out_dir,
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


def _leaderboard(args: argparse.Namespace) -> int:
    paths = write_leaderboard(args.records, args.out, reps=args.reps, seed=args.seed, reference=args.reference)
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """``llm-gym bench``: the ``llm_gym.commands`` entry point."""
    bench = subparsers.add_parser("bench", help="benchmark grid (algorithms x envs x seeds) and leaderboard")
    sub = bench.add_subparsers(dest="bench_command", required=True)

    run = sub.add_parser("run", help="run every grid cell without a record yet (rerunning resumes)")
    run.add_argument("--config", required=True, help="grid YAML (see benchmarks/configs/)")
    run.add_argument("--workers", type=int, help="runs in parallel")
    run.add_argument("--backend", choices=["process", "ray"])
    run.add_argument("--records", help="results JSONL to append to")
    run.add_argument("--out-dir", help="where run folders (checkpoints, logs) go")
    run.add_argument("--seeds", type=yaml.safe_load, help="YAML list, e.g. '[0, 1, 2]'")
    run.add_argument("--threads-per-run", type=int, help="torch threads (and Ray CPUs) per run")
    run.add_argument("--ray-address", help="Ray cluster address (default: start a local instance)")
    run.add_argument("--dry-run", action="store_true", help="list the runs to do and those already recorded")
    run.set_defaults(func=_run)

    board = sub.add_parser("leaderboard", help="records -> leaderboard.md, index.html and plots")
    board.add_argument("--records", required=True, help="results JSONL")
    board.add_argument("--out", required=True, help="output folder")
    board.add_argument("--reps", type=int, default=2000, help="bootstrap resamples")
    board.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    board.add_argument("--reference", default="best-of-n",
                       help="label prefix of the over-optimisation reference (default: best-of-n)")
    board.set_defaults(func=_leaderboard)
