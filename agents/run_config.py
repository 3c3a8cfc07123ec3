"""Run configs: one ``@dataclass`` per command, read from YAML, saved with the run so it can be redone.

Why here: a run's folder must hold the config that made it (``save_config``) in the YAML a user
passes back with ``--config`` to redo it, changing one flag on the command line. Parsing the
command line itself is ``llm_gym.commands`` (``transformers.HfArgumentParser``); ``load_config``
builds a config from such a YAML file in Python.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, TypeVar

import yaml

from agents.run_record import setup_config

C = TypeVar("C")


def load_config(cls: type[C], path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> C:
    """Build ``cls`` from a YAML file and explicit overrides; unknown keys and missing required fields are errors."""
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        values = yaml.safe_load(path.read_text()) or {}
        if not isinstance(values, dict):
            raise ValueError(f"config file {path} must hold a mapping of field: value, got {type(values).__name__}")
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        where = f" in {path}" if path else ""
        raise ValueError(f"unknown {cls.__name__} field(s) {unknown}{where}; known fields: {sorted(names)}")
    missing = [
        f.name
        for f in dataclasses.fields(cls)
        if f.name not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ValueError(f"{cls.__name__} needs {missing}: set them in the YAML config or as --flags")
    return cls(**values)


def save_config(config: Any, out_dir: str | Path, name: str = "config.yaml") -> Path:
    """Write ``config`` as YAML into ``out_dir`` (paths absolute) so ``--config`` reproduces the run from anywhere."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / name
    path.write_text(yaml.safe_dump(setup_config(config), sort_keys=False))
    return path
