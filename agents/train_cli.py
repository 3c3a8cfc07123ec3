"""``llm-gym train --algo NAME``: every registered RL algorithm from one command.

Why one command: benchmarks and users should start any algorithm the same way, on the same env id
with the same env kwargs, budget (sampled completions; preference pairs for DPO) and seed. The
algorithms and their config dataclasses come from ``agents.rl.registry``; the config is filled
from ``--config FILE.yaml`` and ``--field-name`` flags and saved as ``config.yaml`` in
``--output-dir``; rerunning the same command in the same folder resumes from the newest
checkpoint. Under ``accelerate launch -m agents.train_cli ...`` (GPUs) or
``torchrun --nproc_per_node N -m agents.train_cli ...`` (CPU) every process runs the same command
and the trainers split the work.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from pathlib import Path
from typing import Any

import yaml

from agents.rl.registry import ALGORITHMS, make_algorithm, make_config, spec
from agents.run_config import add_config_args, load_config

RUN_FIELDS = {"env_id", "budget", "seed", "output_dir", "env_kwargs", "algo", "config", "command", "func"}


def _union_config() -> type:
    """A dataclass with every registered config's fields, so the flags exist before ``--algo`` is known;
    each algorithm then reads only its own fields (another one is an error naming it)."""
    fields: dict[str, tuple[str, Any, dataclasses.Field]] = {}
    for entry in ALGORITHMS.values():
        hints = typing.get_type_hints(entry.config_class)
        for f in dataclasses.fields(entry.config_class):
            if f.name not in RUN_FIELDS:
                fields.setdefault(f.name, (f.name, hints[f.name], dataclasses.field(default=None)))
    return dataclasses.make_dataclass("TrainFlags", list(fields.values()), namespace={"__module__": __name__})


def run(args: argparse.Namespace) -> int:
    options = {k: v for k, v in vars(args).items() if k not in RUN_FIELDS and v is not None}
    try:
        make_config(args.algo, options)  # names the algorithm and the option it lacks
    except ValueError as err:
        raise SystemExit(f"llm-gym train: error: {err}") from None
    algorithm = make_algorithm(args.algo, load_config(spec(args.algo).config_class, args.config, options))
    result = algorithm.train(args.env_id, args.budget, args.seed, Path(args.output_dir), args.env_kwargs or {})
    if result.final:
        print(json.dumps({"algo": args.algo, "policy": str(result.checkpoint_dir), "final": result.final}))
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--algo", required=True, choices=sorted(ALGORITHMS),
                        help="; ".join(f"{name}: {entry.description}" for name, entry in ALGORITHMS.items()))
    parser.add_argument("--env-id", "--env_id", dest="env_id", default="llm_gym/Arithmetic-v0")
    parser.add_argument("--budget", type=int, required=True, help="sampled completions in total (DPO: preference pairs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", "--output_dir", dest="output_dir", required=True)
    parser.add_argument("--env-kwargs", "--env_kwargs", dest="env_kwargs", type=yaml.safe_load,
                        help="YAML mapping for gymnasium.make_vec, e.g. '{reward: exact_match}'")
    add_config_args(parser, _union_config())


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """``llm-gym train``: the ``llm_gym.commands`` entry point."""
    parser = subparsers.add_parser("train", help=f"train an RL agent ({', '.join(ALGORITHMS)})")
    add_arguments(parser)
    parser.set_defaults(func=run)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agents.train_cli", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
