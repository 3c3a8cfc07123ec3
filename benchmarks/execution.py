"""One run of the benchmark grid, as a worker process executes it: build the algorithm from its
``"module:Class"`` target, train, evaluate with the grid's settings, return the record.

Why its own module: every run starts a fresh interpreter that imports this module, and it imports only
what one run needs (the algorithm's own module comes from its target), not the runner's registry of
every algorithm and its back-ends — some 5 s less per run on a 2-core machine, which a grid of fast
runs (best-of-n, the tests' stand-ins) notices.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import time
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.rl.algorithm import Algorithm
from benchmarks.records import RunRecord, git_commit, hardware_info, package_versions, run_key
from benchmarks.rollouts import read_jsonl_rows, write_rollouts


def resolve_algorithm(target: str) -> type:
    """Import the class behind ``"module:Class"``, with errors that say which part is wrong."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"algorithm target must look like 'module:Class', got {target!r}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        raise ImportError(f"algorithm target {target!r}: cannot import module {module_name!r} ({err})") from err
    if not hasattr(module, attr):
        raise ImportError(f"algorithm target {target!r}: module {module_name!r} has no attribute {attr!r}")
    cls = getattr(module, attr)
    missing = [m for m in ("train", "evaluate") if not callable(getattr(cls, m, None))]
    if missing:
        raise TypeError(f"algorithm target {target!r} does not implement the Algorithm protocol: no {missing}")
    return cls


def _config_class(hint: Any) -> type | None:
    """The dataclass in a parameter annotation (``PPOConfig`` or ``SB3Config | None``), if any."""
    candidates = [hint, *typing.get_args(hint)]
    return next((c for c in candidates if isinstance(c, type) and dataclasses.is_dataclass(c)), None)


def build_algorithm(target: str, kwargs: dict[str, Any]) -> Algorithm:
    """Construct an algorithm from flat keyword arguments, the way a grid config writes them.

    Arguments named in the constructor go to it directly; the rest
    fill its config dataclass (``PPO(config: PPOConfig)``), so ``{learning_rate: 1e-4, model_name_or_path: ...}``
    works for every learner. Unknown or missing fields are errors naming the class and field.
    """
    cls = resolve_algorithm(target)
    params = inspect.signature(cls).parameters
    hints = typing.get_type_hints(cls.__init__)
    if "config" in params and dataclasses.is_dataclass(getattr(cls, "config_class", None)):
        hints["config"] = cls.config_class  # a registered algorithm names its config (subclasses included)
    configs = {name: _config_class(hints.get(name)) for name in params if _config_class(hints.get(name))}
    direct = {k: v for k, v in kwargs.items() if k in params and k not in configs}
    rest = {k: v for k, v in kwargs.items() if k not in direct}
    if len(configs) == 1:
        (name, config_cls), = configs.items()
        known = {f.name for f in dataclasses.fields(config_cls)}
        unknown = sorted(set(rest) - known)
        if unknown:
            raise ValueError(f"{target}: unknown {config_cls.__name__} field(s) {unknown}; known: {sorted(known)}")
        try:
            direct[name] = config_cls(**rest)
        except TypeError as err:
            raise ValueError(f"{target}: cannot build {config_cls.__name__} from {sorted(rest)}: {err}") from err
    elif rest:
        raise ValueError(f"{target}: unknown argument(s) {sorted(rest)}; it takes {sorted(params)}")
    return cls(**direct)


@dataclass(frozen=True)
class RunSpec:
    """Everything a worker process needs to execute one run (picklable, no live objects)."""

    algo: str
    env_id: str
    seed: int
    config: dict[str, Any]
    out_dir: str
    threads: int
    rollouts: str | None = None  # where this run's evaluation rollouts are stored

    @property
    def key(self) -> tuple[str, str, int, str]:
        return run_key(self.algo, self.env_id, self.seed, self.config)

    def describe(self) -> str:
        return f"{self.algo} on {self.env_id} seed={self.seed}"


def execute_run(spec: RunSpec) -> RunRecord:
    """Train one algorithm on one env with one seed, evaluate it, and return its record.

    Runs inside a worker process; the caller appends the record. Thread count is set here
    because each worker is a fresh process sharing the machine with ``workers - 1`` others.
    """
    import torch

    import llm_gym  # noqa: F401  (env ids must be registered in this process too)

    torch.set_num_threads(spec.threads)
    # Provenance is taken before training: the code this process imported, not a later checkout.
    provenance = {"versions": package_versions(), "git_commit": git_commit(), "hardware": hardware_info()}
    cfg = spec.config
    algorithm = build_algorithm(cfg["target"], cfg["algo_kwargs"])
    out_dir = Path(spec.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    result = algorithm.train(spec.env_id, cfg["budget"], spec.seed, out_dir, dict(cfg["env_kwargs"]))
    bad_points = [p for p in result.curve if "step" not in p]
    if bad_points:
        raise ValueError(f"{spec.describe()}: curve points without a 'step' key, e.g. {bad_points[0]}")
    eval_kwargs = {**cfg["env_kwargs"], **cfg["eval_env_kwargs"]}
    eval_seed = cfg["eval_seed"] + (spec.seed if cfg.get("eval_seed_per_run") else 0)
    rollouts_kwargs = {}
    if spec.rollouts and "rollouts_path" in inspect.signature(algorithm.evaluate).parameters:
        raw = out_dir / "eval_rollouts.jsonl"
        raw.unlink(missing_ok=True)  # the learner appends: start empty
        rollouts_kwargs["rollouts_path"] = raw
    final = algorithm.evaluate(result.checkpoint_dir, spec.env_id, cfg["eval_episodes"], eval_seed, eval_kwargs,
                               **rollouts_kwargs)
    if rollouts_kwargs:  # stored before the record exists, so a recorded run always has its rollouts
        write_rollouts(spec.rollouts, read_jsonl_rows(rollouts_kwargs["rollouts_path"]))
    wall_s = time.perf_counter() - start
    return RunRecord(
        algo=spec.algo,
        env_id=spec.env_id,
        seed=spec.seed,
        config=cfg,
        curve=[_metrics(point, spec) for point in thin_curve(result.curve, cfg.get("curve_points"))],
        final=_metrics(final, spec),
        wall_s=wall_s,
        **provenance,
    )


def thin_curve(points: list[dict[str, Any]], keep: int | None) -> list[dict[str, Any]]:
    """At most ``keep`` of ``points``, evenly spaced by position, the first and the last always among them
    (``None`` keeps all). Whole points are kept, never averaged: every stored value is one a run logged."""
    if not keep or len(points) <= keep:
        return list(points)
    return [points[round(i * (len(points) - 1) / (keep - 1))] for i in range(keep)]


def _metrics(values: dict[str, Any], spec: RunSpec) -> dict[str, float | None]:
    """Metric values as plain floats (numpy/torch scalars included); ``None`` stays (a missing value)."""
    out = {}
    for name, value in values.items():
        try:
            out[name] = None if value is None else float(value)
        except (TypeError, ValueError) as err:
            raise TypeError(f"{spec.describe()}: metric {name!r} is not a number: {value!r}") from err
    return out
