"""Run configs: one ``@dataclass`` per command, read from YAML, saved with the run so it can be redone.

Why here: a run's folder must hold the config that made it (``save_config``) in the YAML a user
passes back with ``--config`` to redo it, changing one flag on the command line. Parsing the
command line itself is ``llm_gym.commands`` (``transformers.HfArgumentParser``); ``add_config_args``
and ``config_from_args`` put that same field parsing on a hand-made ``argparse`` parser, for
commands not yet built with ``add_dataclass_command`` (flags left unset do not override the YAML).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from agents.run_record import setup_config
from llm_gym.commands import CommandParser

C = TypeVar("C")


def add_config_args(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add ``--config FILE.yaml`` and ``cls``'s fields as ``HfArgumentParser`` flags whose unset value is absent."""
    parser.add_argument("--config", help="YAML file with the run config; flags override its values")
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        resolved = copy.copy(f)
        resolved.type = hints[f.name]
        before = len(parser._actions)
        CommandParser._parse_dataclass_field(parser, resolved)
        for action in parser._actions[before:]:
            action.default = argparse.SUPPRESS
            action.required = False


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
    """Write ``config`` as YAML into ``out_dir`` (paths absolute) so ``--config`` reproduces the run from anywhere."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / name
    path.write_text(yaml.safe_dump(setup_config(config), sort_keys=False))
    return path
