"""``llm-gym train --algo ppo|grpo|rloo|reinforce|best-of-n|sb3-ppo``: every RL agent from one command.

Why one command: benchmarks and users should start any algorithm the same way, on the same env id
with the same env kwargs, budget (sampled completions) and seed. The algorithm's config dataclass
(``PPOConfig`` or ``PGConfig``) is filled from ``--config FILE.yaml`` and ``--field-name`` flags,
and saved as ``config.yaml`` in ``--out-dir``; rerunning the same command in the same folder
resumes from the newest checkpoint. Under ``accelerate launch -m agents.train_cli ...`` (GPUs) or
``torchrun --nproc_per_node N -m agents.train_cli ...`` (CPU) every process runs the same command
and the trainers split the work.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import sys
import typing
from pathlib import Path
from typing import Any

import yaml

from agents.rl.policy_gradient import BestOfN, PGConfig, PolicyGradient
from agents.rl.ppo import PPO, PPOConfig
from agents.run_config import add_config_args, load_config

ALGOS = ("ppo", "grpo", "rloo", "reinforce", "best-of-n", "sb3-ppo")
TRAINER_FIELDS = {"env_id", "budget", "seed", "out_dir", "env_kwargs", "algo", "config", "command", "func"}


def _sb3_available() -> bool:
    return importlib.util.find_spec("agents.rl.sb3") is not None


def _union_config() -> type:
    """A dataclass with every PPOConfig, PGConfig (and SB3Config) field, so the flags exist before --algo
    is known; each algorithm then reads only its own fields (an unknown one is an error)."""
    classes: list[type] = [PPOConfig, PGConfig]
    if _sb3_available():
        from agents.rl.sb3 import SB3Config

        classes.append(SB3Config)
    fields: dict[str, tuple[str, Any, dataclasses.Field]] = {}
    for cls in classes:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name not in TRAINER_FIELDS:
                default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
                fields.setdefault(f.name, (f.name, hints[f.name], dataclasses.field(default=default)))
    ordered = sorted(fields.values(), key=lambda item: item[2].default is not dataclasses.MISSING)
    return dataclasses.make_dataclass("TrainFlags", ordered, namespace={"__module__": __name__})


def make_algorithm(algo: str, config_path: str | None, overrides: dict[str, Any]):
    """The ``Algorithm`` for ``algo`` with its config built from a YAML file and flag overrides."""
    if algo == "ppo":
        return PPO(load_config(PPOConfig, config_path, overrides))
    config = load_config(PGConfig, config_path, overrides)
    if algo == "best-of-n":
        return BestOfN(config)
    return PolicyGradient(algo, config)


def run(args: argparse.Namespace) -> int:
    if args.algo == "sb3-ppo":
        if not _sb3_available():
            raise SystemExit("--algo sb3-ppo needs the stable-baselines3 adapter (agents/sb3.py), which is not installed")
        from agents import sb3

        env_kwargs = json.dumps(args.env_kwargs) if args.env_kwargs else None  # sb3 reads them as JSON
        return sb3.train_command(argparse.Namespace(**{**vars(args), "env_kwargs": env_kwargs}))
    known = {f.name for f in dataclasses.fields(PPOConfig if args.algo == "ppo" else PGConfig)}
    unknown = sorted(k for k, v in vars(args).items() if k not in TRAINER_FIELDS and v is not None and k not in known)
    if unknown:
        raise SystemExit(f"--algo {args.algo} has no option(s) {', '.join('--' + k.replace('_', '-') for k in unknown)}")
    overrides = {k: v for k, v in vars(args).items() if k not in TRAINER_FIELDS and v is not None}
    algorithm = make_algorithm(args.algo, args.config, overrides)
    result = algorithm.train(args.env_id, args.budget, args.seed, Path(args.out_dir), args.env_kwargs or {})
    if result.final:
        print(json.dumps({"algo": args.algo, "policy": str(result.checkpoint_dir), "final": result.final}))
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--algo", choices=ALGOS, required=True)
    parser.add_argument("--env-id", default="llm_gym/Arithmetic-v0")
    parser.add_argument("--budget", type=int, required=True, help="sampled completions in total")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--env-kwargs", type=yaml.safe_load, help="YAML mapping for gymnasium.make_vec, e.g. '{reward: exact_match}'")
    add_config_args(parser, _union_config())


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """``llm-gym train``: the ``llm_gym.commands`` entry point."""
    parser = subparsers.add_parser("train", help="train an RL agent (PPO, GRPO, RLOO, REINFORCE, best-of-n, SB3 PPO)")
    add_arguments(parser)
    parser.set_defaults(func=run)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agents.train_cli", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
