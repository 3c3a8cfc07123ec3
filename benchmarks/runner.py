"""The benchmark grid: algorithms × envs × seeds from a YAML config, one results record per run.

Why this shape: a leaderboard is only as good as its bookkeeping. Each run executes in a fresh
process (``benchmarks.execution``; no state leaks from one algorithm into the next), the parent
alone appends its record when it finishes (``benchmarks.records``), and a run counts as done exactly
when a record with the same algorithm, env id, seed and config hash is in the records file. So rerunning the same
command skips finished runs, deleting one record line reruns only that run, and changing a
hyper-parameter reruns only the runs it touches. Every algorithm is evaluated by the runner with
the same episodes, seed and env split, so the "final" numbers are comparable across algorithms.

Backends: ``process`` (a local ``ProcessPoolExecutor``, one process per run) and ``ray`` (the
optional ``[ray]`` extra; a local Ray instance or a cluster at ``ray_address``).
"""

from __future__ import annotations

import dataclasses
import subprocess
import traceback
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Literal

import yaml

from agents import metrics as M
from agents.rl.registry import ALGORITHMS as RL_ALGORITHMS
from benchmarks.execution import RunSpec, build_algorithm, execute_run
from benchmarks.grouping import env_name
from benchmarks.records import (
    RESULTS_DIR,
    RunRecord,
    append_record,
    config_hash,
    git_commit,
    is_sealed,
    read_records,
)
from benchmarks.rollouts import default_rollouts_root, rollouts_file


@dataclass(frozen=True)
class AlgorithmEntry:
    """Where a registry name's class lives (``"module:Class"``, imported only when a grid uses it, so
    a missing optional dependency of one algorithm never breaks the others) and the keyword
    arguments the name fixes (``grpo`` and ``rloo`` are one class with another ``algo``)."""

    target: str
    preset: dict[str, Any] = field(default_factory=dict)


ALGORITHMS: dict[str, AlgorithmEntry] = {  # the names of ``agents.rl.registry``, the one list of algorithms
    name: AlgorithmEntry(f"{entry.factory.__module__}:{entry.factory.__qualname__}")
    for name, entry in RL_ALGORITHMS.items()
}


def _registry_entry(name: str, entry: Any) -> AlgorithmEntry:
    """A config's ``registry:`` value: ``"module:Class"`` or ``{target: "module:Class", preset: {...}}``."""
    if isinstance(entry, str):
        entry = {"target": entry}
    if not isinstance(entry, dict) or not isinstance(entry.get("target"), str) or set(entry) - {"target", "preset"}:
        raise ValueError(f"registry entry {name!r} must be 'module:Class' or {{target: ..., preset: {{...}}}}, got {entry!r}")
    if ":" not in entry["target"]:
        raise ValueError(f"algorithm target for {name!r} must look like 'module:Class', got {entry['target']!r}")
    return AlgorithmEntry(entry["target"], dict(entry.get("preset") or {}))


@dataclass
class BenchConfig:
    """One benchmark grid; saved as ``bench_config.yaml`` next to the run folders.

    ``algorithms`` maps a row label to ``{algo: registry name (default: the label), kwargs:
    constructor and config-dataclass keyword arguments (see ``build_algorithm``), budget: episodes
    (default: ``budget``)}``, so one class can appear twice with different settings; ``registry``
    adds names (``name: "module:Class"`` or ``{target, preset}``) to ``ALGORITHMS``. ``envs`` lists
    env ids or ``{id, kwargs}``; ``env_kwargs`` apply to every env (per-env kwargs win). In
    algorithm and env kwargs, ``{env}`` in a string value becomes the env's short name
    (``llm_gym/Arithmetic-v0`` -> ``arithmetic``), so one line can say ``model_name_or_path:
    runs/sft-{env}`` for every env. The final evaluation uses ``eval_episodes`` episodes
    from ``eval_seed + seed`` (so seeds see fresh samples and best-of-n's intervals are real, while
    algorithms with one seed share prompts) with ``eval_env_kwargs`` on top of the env kwargs (the
    test split by default). ``tags`` (say ``{track: verifier, prep: 0}``) are stored in every run's
    config and fill ``{tag}`` placeholders like ``{env}`` (``runs/prep{prep}/sft-{env}``).
    Evaluation rollouts go to ``rollouts_dir`` (default: ``rollouts/`` beside the records file)
    when the learner's ``evaluate`` takes ``rollouts_path``. ``require_clean`` refuses to run from
    a checkout with uncommitted changes, so records name one reproducible commit. ``curve_points``
    keeps at most that many learning-curve points in each record (see ``thin_curve``), so a board's
    records stay one size whatever its budget; the run folder's ``metrics.jsonl`` keeps every point.
    """

    algorithms: dict[str, dict[str, Any]]
    envs: list[Any]
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    budget: int = 4096
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    eval_episodes: int = 256
    eval_seed: int = 10_000
    eval_env_kwargs: dict[str, Any] = field(default_factory=lambda: {"split": "test"})
    records: str = "benchmarks/results/records.jsonl"
    out_dir: str = "runs/bench"
    backend: Literal["process", "ray"] = "process"
    workers: int = 1
    threads_per_run: int = 1
    gpus_per_run: float = 0.0  # Ray only: GPUs each run reserves (fractions share a GPU)
    ray_address: str | None = None
    registry: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, Any] = field(default_factory=dict)
    rollouts_dir: str | None = None
    require_clean: bool = False
    curve_points: int | None = None  # None: every iteration's point


def load_bench_config(path: str | Path, overrides: dict[str, Any] | None = None) -> BenchConfig:
    """A ``BenchConfig`` from a YAML file, with command-line values (not ``None``) on top."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"benchmark config not found: {path}")
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise ValueError(f"benchmark config {path} must be a mapping of field: value, got {type(values).__name__}")
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    known = {f.name for f in dataclasses.fields(BenchConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown benchmark config field(s) {unknown} in {path}; known: {sorted(known)}")
    missing = sorted({"algorithms", "envs"} - set(values))
    if missing:
        raise ValueError(f"benchmark config {path} needs {missing}")
    return BenchConfig(**values)


@dataclass
class BenchSummary:
    """What one ``run_benchmark`` call did: records written, runs skipped as done, runs that failed."""

    completed: list[RunRecord] = field(default_factory=list)
    skipped: list[RunSpec] = field(default_factory=list)
    failed: list[tuple[RunSpec, str]] = field(default_factory=list)


def _fill_env(kwargs: dict[str, Any], env_id: str, tags: dict[str, Any] | None = None) -> dict[str, Any]:
    """String values with ``{env}`` and every ``{tag}`` replaced."""
    values = {**{k: str(v) for k, v in (tags or {}).items()}, "env": env_name(env_id)}

    def fill(text: str) -> str:
        for name, value in values.items():
            text = text.replace("{" + name + "}", value)
        return text

    return {k: fill(v) if isinstance(v, str) else v for k, v in kwargs.items()}


def _env_entries(config: BenchConfig) -> list[tuple[str, dict[str, Any]]]:
    entries = []
    for env in config.envs:
        if isinstance(env, str):
            entries.append((env, dict(config.env_kwargs)))
        elif isinstance(env, dict) and isinstance(env.get("id"), str) and set(env) <= {"id", "kwargs"}:
            entries.append((env["id"], {**config.env_kwargs, **(env.get("kwargs") or {})}))
        else:
            raise ValueError(f"each entry of envs must be an env id or {{id: ..., kwargs: {{...}}}}, got {env!r}")
    entries = [(env_id, _fill_env(kwargs, env_id, config.tags)) for env_id, kwargs in entries]
    ids = [e[0] for e in entries]
    if len(set(ids)) != len(ids):
        raise ValueError(f"envs lists an env id twice: {ids}")
    return entries


def plan_runs(config: BenchConfig) -> list[RunSpec]:
    """The full grid, in algorithm-major order, validated before anything runs."""
    if not config.algorithms:
        raise ValueError("the benchmark config lists no algorithms")
    if not config.envs:
        raise ValueError("the benchmark config lists no envs")
    if not config.seeds or len(set(config.seeds)) != len(config.seeds):
        raise ValueError(f"seeds must be a non-empty list without repeats, got {config.seeds}")
    if config.workers < 1 or config.threads_per_run < 1:
        raise ValueError(f"workers and threads_per_run must be >= 1, got {config.workers}, {config.threads_per_run}")
    if config.backend not in ("process", "ray"):
        raise ValueError(f"unknown backend {config.backend!r}; use 'process' or 'ray'")
    if config.curve_points is not None and config.curve_points < 2:
        raise ValueError(f"curve_points must be >= 2 (the first and the last point) or null, got {config.curve_points}")
    registry = {**ALGORITHMS, **{name: _registry_entry(name, e) for name, e in config.registry.items()}}
    envs = _env_entries(config)
    rollouts_root = Path(config.rollouts_dir) if config.rollouts_dir else default_rollouts_root(config.records)
    specs = []
    for label, entry in config.algorithms.items():
        entry = entry or {}
        unknown = set(entry) - {"algo", "kwargs", "budget"}
        if unknown:
            raise ValueError(f"algorithm {label!r}: unknown keys {sorted(unknown)}; use algo, kwargs, budget")
        name = entry.get("algo", label)
        if name not in registry:
            raise KeyError(f"algorithm {label!r}: unknown algorithm {name!r}; known: {', '.join(sorted(registry))}")
        budget = int(entry.get("budget", config.budget))
        if budget < 1:
            raise ValueError(f"algorithm {label!r}: budget must be >= 1 episode, got {budget}")
        algo_kwargs = {**registry[name].preset, **(entry.get("kwargs") or {})}
        setting = {"target": registry[name].target, "algo_kwargs": algo_kwargs, "budget": budget,
                   "eval_episodes": config.eval_episodes, "eval_seed": config.eval_seed,
                   "eval_env_kwargs": config.eval_env_kwargs}
        for env_id, env_kwargs in envs:
            run_config = {
                **setting,
                "algo_kwargs": _fill_env(algo_kwargs, env_id, config.tags),
                "env_kwargs": env_kwargs,
                "eval_seed_per_run": True,  # the evaluation seed is eval_seed + the run's seed
                "variant": config_hash(setting),  # the setting before {env}/{tag} filling: one row across envs, preps
                "tags": dict(config.tags),
                **({"curve_points": config.curve_points} if config.curve_points else {}),
            }
            for seed in config.seeds:
                run_dir = Path(config.out_dir) / label / env_id.replace("/", "_") / f"seed{seed}-{config_hash(run_config)[:8]}"
                rollouts = rollouts_file(rollouts_root, label, env_id, seed, run_config)
                specs.append(RunSpec(label, env_id, int(seed), run_config, str(run_dir), config.threads_per_run,
                                     str(rollouts)))
    return specs


def check_grid(specs: list[RunSpec]) -> None:
    """Fail before launching anything if an algorithm cannot be built or an env cannot be made."""
    import gymnasium

    import llm_gym  # noqa: F401  (registers the llm_gym/ ids and env plug-ins)

    checked = set()
    for spec in specs:  # constructing each (class, kwargs) once checks the kwargs; nothing trains yet
        key = (spec.config["target"], config_hash(spec.config["algo_kwargs"]))
        if key not in checked:
            checked.add(key)
            build_algorithm(spec.config["target"], spec.config["algo_kwargs"])
    for env_id, env_kwargs in {s.env_id: s.config["env_kwargs"] for s in specs}.items():
        if env_id not in gymnasium.registry:
            raise KeyError(f"unknown env id {env_id!r}; see `llm-gym envs` for the registered ids")
        try:  # a wrong tokenizer path or reward spec fails here once, not in every worker
            gymnasium.make(env_id, **env_kwargs).close()
        except Exception as err:
            raise ValueError(f"cannot make {env_id} with env_kwargs {env_kwargs}: {err}") from err


def pending_runs(specs: list[RunSpec], records_path: str | Path) -> tuple[list[RunSpec], list[RunSpec]]:
    """Split the grid into (to run, already recorded) by (algo, env id, seed, config hash)."""
    done = {record.key for record in read_records(records_path)}
    todo = [s for s in specs if s.key not in done]
    return todo, [s for s in specs if s.key in done]


def run_benchmark(config: BenchConfig, log: Callable[[str], None] = print,
                  on_run: Callable[[RunRecord | None], None] | None = None) -> BenchSummary:
    """Run every grid cell that has no record yet; a failed run is reported and the others go on.
    ``on_run`` is called after each run with its record (None when it failed)."""
    if config.require_clean:
        check_clean_checkout()
    specs = plan_runs(config)
    todo, skipped = pending_runs(specs, config.records)
    summary = BenchSummary(skipped=skipped)
    log(f"{len(specs)} runs in the grid: {len(skipped)} already recorded in {config.records}, {len(todo)} to run")
    if not todo:
        return summary
    if is_sealed(config.records):
        raise ValueError(f"{config.records} is a sealed records file (benchmarks.seal) and takes no more runs; "
                         f"{len(todo)} of this grid's runs are not in it: record them in a new records file")
    check_grid(todo)
    _save_config(config)

    def finished(spec: RunSpec, record: RunRecord | None, error: str | None) -> None:
        n = len(summary.completed) + len(summary.failed) + 1
        if record is not None:
            append_record(config.records, record)
            summary.completed.append(record)
            gold = record.final.get(M.GOLD_REWARD)
            gold_text = "not logged" if gold is None else f"{gold:.3f}"
            log(f"[{n}/{len(todo)}] {spec.describe()}: done in {record.wall_s:.1f}s, gold reward {gold_text}")
        else:
            summary.failed.append((spec, error or "unknown error"))
            log(f"[{n}/{len(todo)}] {spec.describe()}: FAILED\n{error}")
        if on_run is not None:
            on_run(record)

    if config.backend == "process":
        _run_processes(todo, config.workers, finished)
    else:
        _run_ray(todo, config, finished)
    return summary


def check_clean_checkout(repo_dir: str | Path | None = None) -> str:
    """The checkout's commit, or an error listing the uncommitted changes that would make records irreproducible."""
    commit = git_commit(repo_dir)
    if commit == "unknown":
        raise RuntimeError("refusing to record benchmark runs outside a git checkout: records must name their commit")
    if commit.endswith("-dirty"):
        cwd = Path(repo_dir) if repo_dir else Path(__file__).resolve().parent
        changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ":(top)",
                                  f":(top,exclude){RESULTS_DIR}"], cwd=cwd,
                                 capture_output=True, text=True, check=False).stdout.split("\n")
        raise RuntimeError(f"refusing to record benchmark runs from a dirty checkout ({commit}); commit or stash "
                           f"these changes first: {', '.join(c.strip() for c in changed if c.strip())}")
    return commit


def _save_config(config: BenchConfig) -> None:
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_config.yaml").write_text(yaml.safe_dump(dataclasses.asdict(config), sort_keys=False))


def _run_processes(todo: list[RunSpec], workers: int, finished: Callable) -> None:
    # spawn: a forked child would inherit the parent's torch thread pools; max_tasks_per_child=1
    # gives every run a fresh interpreter.
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"), max_tasks_per_child=1) as pool:
        futures: dict[Future, RunSpec] = {pool.submit(execute_run, spec): spec for spec in todo}
        while futures:
            done, _ = wait(futures, return_when=FIRST_COMPLETED)
            for future in done:
                spec = futures.pop(future)
                try:
                    record = future.result()
                except Exception:  # a failed run must not stop the grid; its traceback is reported
                    finished(spec, None, traceback.format_exc())
                    continue
                finished(spec, record, None)


def _run_ray(todo: list[RunSpec], config: BenchConfig, finished: Callable) -> None:
    try:
        import ray
    except ImportError as err:
        raise ImportError("backend 'ray' needs the ray extra: pip install -c constraints.txt -e '.[ray]'") from err
    started_here = not ray.is_initialized()
    if started_here:
        if config.ray_address:
            ray.init(address=config.ray_address)
        else:
            ray.init(num_cpus=config.workers * config.threads_per_run, include_dashboard=False, log_to_driver=False)
    try:
        # max_calls=1: like the process backend, every run gets a fresh worker process.
        remote_run = ray.remote(num_cpus=config.threads_per_run, num_gpus=config.gpus_per_run, max_calls=1)(execute_run)
        refs = {remote_run.remote(spec): spec for spec in todo}
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1)
            for ref in done:
                spec = refs.pop(ref)
                try:
                    record = ray.get(ref)
                except Exception:
                    finished(spec, None, traceback.format_exc())
                    continue
                finished(spec, record, None)
    finally:
        if started_here:
            ray.shutdown()
