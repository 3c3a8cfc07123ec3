"""``llm-gym <algorithm>``: one subcommand per registered RL algorithm, like ``trl grpo``.

Why one subcommand per algorithm: each lists only its own options (``llm-gym grpo --help`` shows
GRPO's fields, not PPO's), parsed from the algorithm's config dataclass plus the ``RunArguments``
every run shares (where it writes, which env, how many samples, which seed). The algorithms come
from ``agents.rl.registry``, so a newly registered one is a new subcommand with no code here.
Rerunning the same command in the same ``--output_dir`` resumes from its newest checkpoint. Under
``accelerate launch -m agents.train_cli ppo ...`` (GPUs) or ``torchrun --nproc_per_node N -m
agents.train_cli ppo ...`` (CPU) every process runs the same command and the trainers split the work.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

import gymnasium

from agents.reward_monitor import RewardMonitor, RewardMonitorConfig
from agents.rl.registry import ALGORITHMS, make_algorithm
from llm_gym.commands import ENV_KWARGS_HELP, CommandParser, add_dataclass_command, require_env_id, run_cli


@dataclass
class RunArguments:
    """Where an RL run writes, which env it trains on, for how many samples and with which seed."""

    output_dir: str = field(metadata={
        "help": "run directory: the trained policy, config, run record, metrics, TensorBoard logs, checkpoints",
        "path": "output"})
    env_id: str = field(default="llm_gym/Arithmetic-v0", metadata={"help": "env the policy is trained and evaluated on"})
    env_kwargs: dict[str, Any] = field(default_factory=dict, metadata={"help": ENV_KWARGS_HELP})
    reward_model: str | None = field(default=None, metadata={
        "help": "directory of a learned reward model (from `llm-gym reward-model`) to optimise: the same as "
                "env_kwargs {\"reward\": \"learned:path=DIR\"}", "path": "dir"})
    budget: int = field(default=2560, metadata={"help": "sampled completions in total (dpo: preference pairs)"})
    seed: int = field(default=0, metadata={"help": "seed of the prompts, the sampling and the initialisation"})
    resume_from_checkpoint: Literal["auto"] = field(default="auto", metadata={
        "help": "auto: resume from the newest checkpoint in output_dir when there is one; a checkpoint or run "
                "record of another setup (algorithm, config, env_id, env_kwargs, seed) is refused, naming the difference"})

    def __post_init__(self) -> None:
        require_env_id(self.env_id)
        if self.reward_model is not None:
            if "reward" in self.env_kwargs:
                raise ValueError(f"give the reward once: --reward_model {self.reward_model} or env_kwargs "
                                 f"reward={self.env_kwargs['reward']!r}, not both")
            self.env_kwargs = {**self.env_kwargs, "reward": f"learned:path={Path(self.reward_model).resolve()}"}


def train(algo: str, config: Any, run: RunArguments, monitor: RewardMonitorConfig | None = None) -> int:
    """Train ``algo`` as configured and print where the policy is with its final evaluation.

    Algorithms that take training callbacks (the on-policy loop) are watched by a ``RewardMonitor``:
    proxy-gold divergence every iteration, the ensemble's disagreement when one is given, and the
    optional stop rule.
    """
    algorithm = make_algorithm(algo, config)
    options: dict[str, Any] = {}
    if monitor is not None:
        # the task as the trainer's env makes it: with the policy's tokenizer (a chat dataset renders its prompts with it)
        policy = getattr(config, "model_name_or_path", None)
        env_kwargs = {**({"tokenizer": policy} if policy else {}), **run.env_kwargs}
        task = gymnasium.make(run.env_id, **env_kwargs).unwrapped.problem.task
        options["callbacks"] = [RewardMonitor(monitor, task=task)]
    result = algorithm.train(run.env_id, run.budget, run.seed, Path(run.output_dir), run.env_kwargs, **options)
    if result.final:
        print(json.dumps({"algo": algo, "policy": str(result.checkpoint_dir), "final": result.final}))
    return 0


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """The ``llm_gym.commands`` entry point: ``llm-gym ppo``, ``llm-gym grpo``... one per registered algorithm."""
    for name, entry in ALGORITHMS.items():
        takes_callbacks = "callbacks" in inspect.signature(entry.factory.train).parameters
        classes = [entry.config_class, RunArguments, *([RewardMonitorConfig] if takes_callbacks else [])]
        add_dataclass_command(subparsers, name, entry.description, classes, partial(train, name),
                              description=f"{name}: {entry.description}. Options: the algorithm's config, then the run's.")


def main(argv: list[str] | None = None) -> int:
    """``python -m agents.train_cli <algorithm> [options]`` (for ``accelerate launch`` and ``torchrun``)."""
    parser = CommandParser(prog="python -m agents.train_cli", description=__doc__.split("\n")[0])
    add_command(parser.add_subparsers(dest="command", required=True, metavar="ALGORITHM", parser_class=CommandParser))
    return run_cli(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
