"""The ``llm-gym`` command: ``envs`` and ``tiny`` here, the rest from installed packages.

Other packages add subcommands (``sft``, ``feedback``, ``reward-model``, ``train``, ``demo``,
``bench``) through the ``llm_gym.commands`` entry-point group: each entry point is a function
``add_command(subparsers)``, usually one ``llm_gym.commands.add_dataclass_command`` call, so every
command parses, reports errors and stays quiet the same way.
"""

from __future__ import annotations

import fnmatch
import sys
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Literal

import gymnasium

import llm_gym
from llm_gym.commands import CommandParser, add_dataclass_command, require_env_id, run_cli
from llm_gym.models import TinyModelConfig, save_tiny
from llm_gym.registration import describe_env, llm_gym_env_ids

COMMAND_ENTRY_POINT_GROUP = "llm_gym.commands"
DESCRIPTION = (
    "Language-model text generation as Gymnasium environments: list the envs, build tiny models, "
    "fine-tune a policy, collect feedback, train reward models and RL agents, and benchmark them."
)


@dataclass
class EnvsArguments:
    """List the registered env ids with their optimised reward, gold reward and what they ask for."""

    filter: str | None = field(
        default=None,
        metadata={"help": "show only ids containing this text, or matching this glob (e.g. 'arith', '*Dataset*'); case-insensitive"},
    )


@dataclass
class TinyArguments:
    """Build a tiny random-init causal LM and a tokenizer trained on an env's text, saved with save_pretrained."""

    output_dir: str = field(metadata={"help": "directory to write the model and tokenizer to", "path": "output"})
    env_id: str = field(default="llm_gym/Arithmetic-v0", metadata={"help": "env whose task text the tokenizer is trained on"})
    env_kwargs: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "keyword arguments for gymnasium.make(env_id), a JSON or YAML mapping, e.g. '{\"task_kwargs\": {\"digits\": 2}}'"},
    )
    family: Literal["gpt2", "llama"] = field(default="gpt2", metadata={"help": "model architecture"})
    tokenizer: Literal["char", "bpe"] = field(default="char", metadata={"help": "tokenizer kind"})
    n_layer: int = field(default=3, metadata={"help": "transformer layers"})
    n_embd: int = field(default=128, metadata={"help": "hidden size"})
    n_head: int = field(default=4, metadata={"help": "attention heads"})
    seed: int = field(default=0, metadata={"help": "seed of the weights and of the text sample"})

    def __post_init__(self) -> None:
        require_env_id(self.env_id)


def matches(env_id: str, pattern: str | None) -> bool:
    """Case-insensitive substring or glob match of an env id."""
    if not pattern:
        return True
    env_id, pattern = env_id.lower(), pattern.lower()
    return pattern in env_id or fnmatch.fnmatch(env_id, pattern)


def env_rows(pattern: str | None = None) -> list[tuple[str, str, str, str]]:
    """(env id, reward, gold reward, description) for every registered ``llm_gym/`` env matching ``pattern``."""
    rows = []
    for env_id in llm_gym_env_ids():
        if not matches(env_id, pattern):
            continue
        about = describe_env(env_id)
        rows.append((env_id, about["reward"], about["gold_reward"], about["description"]))
    return rows


def format_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """Left-aligned columns as wide as their longest cell; the last column is not padded."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    lines = ["  ".join([*(cell.ljust(w) for cell, w in zip(row, widths)), row[-1]]).rstrip() for row in [header, *rows]]
    return "\n".join(lines)


def list_envs(args: EnvsArguments) -> int:
    rows = env_rows(args.filter)
    if not rows:
        print(f"no registered env id matches {args.filter!r}", file=sys.stderr)
        return 1
    print(format_table(("ENV ID", "REWARD", "GOLD", "DESCRIPTION"), rows))
    return 0


def build_tiny(args: TinyArguments) -> int:
    task = gymnasium.make(args.env_id, **args.env_kwargs).unwrapped.problem.task
    samples = task.dataset("train", 2000, seed=args.seed) + task.dataset("test", 200, seed=args.seed)
    config = TinyModelConfig(family=args.family, n_layer=args.n_layer, n_embd=args.n_embd, n_head=args.n_head, seed=args.seed)
    out = save_tiny(args.output_dir, [s.prompt + s.reference for s in samples], args.tokenizer, config)
    print(f"wrote a tiny {args.family} model and {args.tokenizer} tokenizer for {args.env_id} to {out}")
    return 0


BUILTIN_COMMANDS = {  # name: (help, arguments dataclass, function)
    "envs": ("list registered env ids with their reward specs", EnvsArguments, list_envs),
    "tiny": ("build a tiny random-init model and tokenizer for an env", TinyArguments, build_tiny),
}


def build_parser(command: str | None = None) -> CommandParser:
    """``llm-gym`` with its built-in subcommands and every ``llm_gym.commands`` entry point.

    With ``command`` (the name on the command line) only what that command needs is loaded: nothing for a
    built-in one, the entry point of that name when there is one. Each entry point imports its trainers
    (seconds on a small machine), so ``llm-gym envs`` need not wait for them. Any other name (``ppo``
    comes from the ``algorithms`` entry point), or none, loads them all, so the help and the "invalid
    choice" error list every command.
    """
    parser = CommandParser(prog="llm-gym", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"llm-gym {llm_gym.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=CommandParser)
    for name, (help_text, arguments, function) in BUILTIN_COMMANDS.items():
        add_dataclass_command(sub, name, help_text, arguments, function)
    if command in BUILTIN_COMMANDS:
        return parser
    every = entry_points(group=COMMAND_ENTRY_POINT_GROUP)
    for ep in [ep for ep in every if ep.name == command] or every:
        ep.load()(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((arg for arg in argv if not arg.startswith("-")), None)  # llm-gym's own options take no value
    return run_cli(build_parser(command), argv)


if __name__ == "__main__":
    sys.exit(main())
