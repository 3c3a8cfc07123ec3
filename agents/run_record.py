"""What a run directory records to be reproduced, and the check that refuses to resume a different setup.

Why: a run folder must say exactly how it was made (the full config with absolute paths, the env
id and env kwargs, package versions, the git commit, the command line) so anyone can rerun it; and
rerunning a command in a folder that holds a run of another setup (another dataset, reward, env or
algorithm) must stop with the difference named instead of silently resuming and appending to the
old metrics.

API
---
``write_run_record(output_dir, command, config, extra=None) -> Path``
    Writes ``output_dir/run_record.json``: ``{"command", "config", **extra, "versions",
    "git_commit", "argv", "cwd"}``. ``config`` is a dataclass; its fields marked
    ``metadata={"path": ...}`` (see ``llm_gym.commands``) are stored as absolute paths. ``extra``
    holds setup values that are not config fields (for an RL run: ``env_id``, ``env_kwargs``, ``algo``).
``check_resumable(output_dir, command, config, extra=None, keys=()) -> None``
    Raises ``RunMismatch`` when ``output_dir`` holds a record whose command, any ``extra`` value or
    any config field named in ``keys`` differs from this run's (paths compared absolute). A folder
    without a record passes.
``read_run_record(output_dir) -> dict | None`` and ``setup_config(config) -> dict`` (the config as
    recorded: JSON types, absolute paths).
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import subprocess
import sys
from collections.abc import Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

RUN_RECORD_FILE = "run_record.json"
RECORDED_PACKAGES = ("llm-gym", "torch", "transformers", "accelerate", "gymnasium", "tokenizers", "datasets", "peft")
NOT_PATHS = ("auto",)  # values of path fields that are keywords, not paths (resume_from_checkpoint=auto)


class RunMismatch(ValueError):
    """Resuming into ``output_dir`` would mix two setups: ``key`` was ``recorded`` there and is ``given`` now."""

    def __init__(self, output_dir: str | Path, key: str, recorded: Any, given: Any):
        self.output_dir, self.key, self.recorded, self.given = Path(output_dir), key, recorded, given
        super().__init__(
            f"{output_dir} holds a run with a different {key}: {_show(recorded)} there, {_show(given)} now; "
            "rerun with the recorded setup, or choose another --output_dir"
        )


def _show(value: Any) -> str:
    return json.dumps(value, sort_keys=True) if not isinstance(value, str) else repr(value)


def _jsonable(value: Any) -> Any:
    """JSON types only (tuples -> lists, paths -> str), so a value read back compares equal to one computed now."""
    return json.loads(json.dumps(value, default=str))


def local_model_path(name: str, value: Any) -> Any:
    """An HF-style ``*_name_or_path`` field's value made absolute when it is a local path; a hub id (or any other
    field) stays as given."""
    if name.endswith("name_or_path") and isinstance(value, (str, Path)) and str(value) and Path(value).expanduser().exists():
        return str(Path(value).expanduser().resolve())
    return value


def setup_config(config: Any) -> dict[str, Any]:
    """``config`` as recorded: a JSON mapping with paths made absolute: the fields marked as paths, and a local
    ``*_name_or_path`` (``local_model_path``)."""
    values = dataclasses.asdict(config)
    for f in dataclasses.fields(config):
        value = values[f.name]
        if "path" in f.metadata and isinstance(value, (str, Path)) and str(value) and str(value) not in NOT_PATHS:
            values[f.name] = str(Path(value).expanduser().resolve())
        else:
            values[f.name] = local_model_path(f.name, value)
    return _jsonable(values)


def package_versions(packages: Sequence[str] = RECORDED_PACKAGES) -> dict[str, str]:
    """Python and the installed versions (``importlib.metadata``) of the packages a run's numbers depend on."""
    found = {"python": platform.python_version()}
    for name in packages:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def source_commit(repo_dir: str | Path | None = None, ignore: Sequence[str] = ()) -> str:
    """The commit of the code in the checkout at ``repo_dir`` (default: this package's), ``"unknown"`` outside one.

    That is ``HEAD``, or with ``ignore`` (paths from the repository root) the newest commit that
    changed anything outside them; suffixed ``-dirty`` (as ``git describe --dirty``) when tracked
    files outside ``ignore`` differ from it.
    """
    cwd = Path(repo_dir) if repo_dir else Path(__file__).resolve().parent
    spec = [":(top)", *(f":(top,exclude){path}" for path in ignore)]
    head = ["git", "log", "-1", "--format=%H", "--", *spec] if ignore else ["git", "rev-parse", "HEAD"]
    try:
        sha = subprocess.run(head, cwd=cwd, capture_output=True, text=True, check=True, timeout=30).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", *spec], cwd=cwd,
                               capture_output=True, text=True, check=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (sha or "unknown") + ("-dirty" if dirty and sha else "")


def read_run_record(output_dir: str | Path) -> dict[str, Any] | None:
    """The record of the run in ``output_dir``, or None when there is none."""
    path = Path(output_dir) / RUN_RECORD_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: run record is not valid JSON ({err.msg}); delete it to start a new run there") from None


def write_run_record(output_dir: str | Path, command: str, config: Any, extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``output_dir/run_record.json`` atomically (see the module docstring for its fields)."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "command": command,
        "config": setup_config(config),
        **_jsonable(dict(extra or {})),
        "versions": package_versions(),
        "git_commit": source_commit(),
        "argv": sys.argv,
        "cwd": os.getcwd(),
    }
    path = out / RUN_RECORD_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, path)
    return path


def check_resumable(
    output_dir: str | Path, command: str, config: Any, extra: Mapping[str, Any] | None = None, keys: Sequence[str] = ()
) -> None:
    """Raise ``RunMismatch`` naming the first difference between ``output_dir``'s record and this run's setup."""
    record = read_run_record(output_dir)
    if record is None:
        return
    if record.get("command") != command:
        raise RunMismatch(output_dir, "command", record.get("command"), command)
    for key, value in _jsonable(dict(extra or {})).items():
        if key in record and record[key] != value:
            raise RunMismatch(output_dir, key, record[key], value)
    given = setup_config(config)
    for key in keys:
        recorded = record.get("config", {}).get(key)
        if recorded != given[key]:
            raise RunMismatch(output_dir, key, recorded, given[key])
