"""Run configs: one ``@dataclass`` per command, read from YAML, overridden by ``--flags``, saved with the run.

Why one helper: every trainer's config has to be reproducible from its output folder, and a user
should be able to take that saved YAML, change one flag on the command line and rerun. The flags
are generated from the dataclass fields (``lr`` -> ``--lr``, ``task_kwargs`` -> ``--task-kwargs``),
so a new field is a new flag with no parser code to keep in sync.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

C = TypeVar("C")


def _field_type(cls: type, field: dataclasses.Field) -> Any:
    hint = typing.get_type_hints(cls)[field.name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0]
    return hint


def _parse_flag(kind: Any):
    if kind is bool:
        return lambda text: {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}[text.lower()]
    if kind in (int, float, str):
        return kind
    return yaml.safe_load  # dicts, lists, literals: written as YAML on the command line


def add_config_args(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add ``--config FILE.yaml`` and one ``--field-name`` flag per dataclass field (default: unset)."""
    parser.add_argument("--config", help="YAML file with the run config; flags override its values")
    for field in dataclasses.fields(cls):
        kind = _field_type(cls, field)
        default = field.default if field.default is not dataclasses.MISSING else "required"
        help_text = f"(default: {default})"
        parser.add_argument(f"--{field.name.replace('_', '-')}", dest=field.name, type=_parse_flag(kind), help=help_text)


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


def config_from_args(cls: type[C], args: argparse.Namespace) -> C:
    """The config a command line describes: ``--config`` file first, then every flag that was given."""
    names = {f.name for f in dataclasses.fields(cls)}
    return load_config(cls, args.config, {k: v for k, v in vars(args).items() if k in names})


def save_config(config: Any, out_dir: str | Path, name: str = "config.yaml") -> Path:
    """Write ``config`` as YAML into ``out_dir`` so the run can be reproduced from its folder."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / name
    path.write_text(yaml.safe_dump(dataclasses.asdict(config), sort_keys=False))
    return path
