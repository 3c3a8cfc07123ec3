"""Results records: one JSON object per benchmark run, one per line, in an append-only JSONL file.

Leaderboards are computed from records only, so a record carries everything needed to trust and
reproduce a number: the run's identity (algo, env id, seed, config), the software and hardware it
ran on, its learning curve and its final evaluation (shared CONVENTIONS, "Results records").

Why ``O_APPEND`` + one ``write`` + ``fsync`` rather than "write a temp copy, then ``os.replace``":
the replace pattern rewrites the whole file per run (O(file) per append) and, worse, two runners
sharing a records file would each replace the other's copy and silently drop records. With
``O_APPEND`` the kernel moves to end-of-file and writes in one step, so concurrent appenders on a
local filesystem never interleave or overwrite, and ``fsync`` makes a record durable before the
runner treats the run as finished. The one failure left is a crash in the middle of a write,
which can leave a torn last line: the reader skips any line that is not a complete JSON object,
warns with its line number, and the runner therefore sees that run as not done and redoes it; the
next append starts on a fresh line so a torn tail never corrupts a later record.

A finished board is *sealed* (``benchmarks.seal``): its ``records.jsonl`` becomes ``records.jsonl.gz``,
the same lines gzip-compressed. Each RL record carries its whole learning curve as JSON floats, so a
board's records run to tens of megabytes and compress about fivefold; a sealed file is read like the
plain one and takes no appends, so a committed board cannot grow by accident.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import platform
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agents.run_record import package_versions as _installed_versions
from agents.run_record import source_commit

# The packages whose versions decide a run's numbers; those not installed are left out.
RESULTS_DIR = "benchmarks/results"  # committed results; never part of the code a record names
VERSIONED_PACKAGES = (
    "llm-gym",
    "torch",
    "transformers",
    "tokenizers",
    "accelerate",
    "gymnasium",
    "numpy",
    "safetensors",
    "stable-baselines3",
    "peft",
    "trl",
    "ray",
)
RECORDS_FILE = "records.jsonl"  # a board's records while its runs are appended
SEALED_RECORDS_FILE = RECORDS_FILE + ".gz"  # the same lines, gzip-compressed, once the board is sealed
REQUIRED_KEYS = ("algo", "env_id", "seed", "config", "versions", "git_commit", "hardware", "curve", "final", "wall_s")


def config_hash(config: dict[str, Any]) -> str:
    """A stable 16-hex-digit digest of a run config (key order does not matter)."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass
class RunRecord:
    """The results of one (algorithm, env, seed, config) run; ``key`` is what resumption matches on.

    ``curve`` holds one ``{"step": samples_seen, metric: value...}`` per log point and ``final``
    the runner's evaluation of the final policy, both with the metric names of shared CONVENTIONS.
    ``wall_s`` covers training plus that final evaluation. Non-finite metric values are stored as
    ``null`` (strict JSON has no NaN).
    """

    algo: str
    env_id: str
    seed: int
    config: dict[str, Any]
    versions: dict[str, str] = field(default_factory=dict)
    git_commit: str = "unknown"
    hardware: dict[str, Any] = field(default_factory=dict)
    curve: list[dict[str, float | None]] = field(default_factory=list)
    final: dict[str, float | None] = field(default_factory=dict)
    wall_s: float = 0.0

    @property
    def key(self) -> tuple[str, str, int, str]:
        return run_key(self.algo, self.env_id, self.seed, self.config)

    def to_json(self) -> str:
        return json.dumps(_finite(asdict(self)), sort_keys=False, allow_nan=False, default=_json_default)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        missing = [k for k in REQUIRED_KEYS if k not in data]
        if missing:
            raise ValueError(f"results record is missing keys {missing}")
        return cls(**{k: data[k] for k in REQUIRED_KEYS})


def run_key(algo: str, env_id: str, seed: int, config: dict[str, Any]) -> tuple[str, str, int, str]:
    return (algo, env_id, int(seed), config_hash(config))


def append_record(path: str | Path, record: RunRecord) -> None:
    """Append ``record`` as one line with a single ``O_APPEND`` write, then fsync (see module doc)."""
    append_json_line(path, record.to_json())


def is_sealed(path: str | Path) -> bool:
    """Whether ``path`` names a sealed (gzip-compressed, closed) records file."""
    return Path(path).suffix == ".gz"


def append_json_line(path: str | Path, text: str) -> None:
    """Append one JSON line to an append-only results file the way records are appended (see module doc)."""
    path = Path(path)
    if is_sealed(path):
        raise ValueError(f"{path} is a sealed records file and takes no more runs: run into a new records file")
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (text + "\n").encode()
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        if _ends_without_newline(fd):
            line = b"\n" + line  # a torn line from a crashed writer: start ours on a fresh line
        written = os.write(fd, line)
        if written != len(line):
            raise OSError(f"short write to {path}: {written} of {len(line)} bytes (disk full?)")
        os.fsync(fd)
    finally:
        os.close(fd)


def read_records(path: str | Path) -> list[RunRecord]:
    """All complete records in ``path`` (none if it does not exist); torn or invalid lines are skipped
    with a warning naming the line, so a crashed write costs one rerun, never the whole file."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    with (gzip.open(path, "rb") if is_sealed(path) else path.open("rb")) as f:
        for lineno, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                records.append(RunRecord.from_dict(json.loads(raw)))
            except (json.JSONDecodeError, UnicodeDecodeError, TypeError, ValueError) as err:
                warnings.warn(f"{path}:{lineno}: skipping invalid results record ({err})", stacklevel=2)
    return records


def records_file(directory: str | Path) -> Path:
    """A board directory's records: ``records.jsonl`` while runs are appended, ``records.jsonl.gz`` once sealed.

    A directory holding both is refused: which of them is the board would be a guess."""
    directory = Path(directory)
    plain, sealed = directory / RECORDS_FILE, directory / SEALED_RECORDS_FILE
    if sealed.exists() and plain.exists():
        raise ValueError(f"{directory} holds both {RECORDS_FILE} and {SEALED_RECORDS_FILE}: a sealed board takes no "
                         f"more runs, so move {RECORDS_FILE} aside (or into a board of its own)")
    return sealed if sealed.exists() else plain


def package_versions(packages: tuple[str, ...] = VERSIONED_PACKAGES) -> dict[str, str]:
    """Installed versions of the packages that decide a benchmark's numbers."""
    return _installed_versions(packages)


def git_commit(repo_dir: str | Path | None = None) -> str:
    """The commit of the code a benchmark runs: the newest commit that changed anything outside
    ``benchmarks/results/``, suffixed ``-dirty`` when tracked files outside it differ from that commit;
    ``"unknown"`` outside a git checkout.

    Results are left out so that committing a grid's progress (records, ``progress.json``) neither
    changes the commit its runs name nor makes the checkout dirty: an interrupted board is committed,
    and resumed later from the same code, and ``git checkout <commit>`` reproduces every record.
    """
    return source_commit(repo_dir or Path(__file__).resolve().parent, ignore=(RESULTS_DIR,))


def hardware_info() -> dict[str, Any]:
    """CPU model and core counts, memory, and the GPU name when CUDA is visible."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gb": _memory_gb(),
        "gpu": None,
    }
    import torch  # imported here: reading records must not pay for torch

    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_count"] = torch.cuda.device_count()
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _ends_without_newline(fd: int) -> bool:
    size = os.fstat(fd).st_size
    return size > 0 and os.pread(fd, 1, size - 1) != b"\n"


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _json_default(value: Any) -> Any:
    """numpy / torch scalars and paths, which metrics and configs often contain."""
    if hasattr(value, "item"):
        item = value.item()
        return None if isinstance(item, float) and not math.isfinite(item) else item
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in a results record: {value!r}")
