"""The ``llm-gym`` command. Built-in: ``envs``, ``tiny``. Other packages add subcommands (``sft``,
``train``, ``demo``...) through the ``llm_gym.commands`` entry-point group: each entry point is a
function ``add_command(subparsers)`` that adds a parser with ``set_defaults(func=run)``.
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import entry_points

from llm_gym.models import TinyModelConfig, save_tiny
from llm_gym.registration import describe_env, llm_gym_env_ids
from llm_gym.tasks import make_task

COMMAND_ENTRY_POINT_GROUP = "llm_gym.commands"


def _envs(args: argparse.Namespace) -> int:
    for env_id in llm_gym_env_ids():
        about = describe_env(env_id)
        print(f"{env_id:32s} reward={about['reward']:24s} gold={about['gold_reward']:12s} {about['description']}")
    return 0


def _tiny(args: argparse.Namespace) -> int:
    task = make_task(args.task)
    samples = task.dataset("train", 2000, seed=0) + task.dataset("test", 200, seed=0)
    config = TinyModelConfig(family=args.family, n_layer=args.n_layer, n_embd=args.n_embd, n_head=args.n_head)
    out = save_tiny(args.out, [s.prompt + s.reference for s in samples], args.tokenizer, config)
    print(f"wrote tiny {args.family} model and {args.tokenizer} tokenizer for task {args.task!r} to {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llm-gym", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    envs = sub.add_parser("envs", help="list registered env ids with their reward specs")
    envs.set_defaults(func=_envs)
    tiny = sub.add_parser("tiny", help="build a tiny random-init model + tokenizer for a task (save_pretrained)")
    tiny.add_argument("--task", default="arithmetic")
    tiny.add_argument("--out", required=True)
    tiny.add_argument("--family", choices=["gpt2", "llama"], default="gpt2")
    tiny.add_argument("--tokenizer", choices=["char", "bpe"], default="char")
    tiny.add_argument("--n-layer", type=int, default=3)
    tiny.add_argument("--n-embd", type=int, default=128)
    tiny.add_argument("--n-head", type=int, default=4)
    tiny.set_defaults(func=_tiny)
    for ep in entry_points(group=COMMAND_ENTRY_POINT_GROUP):
        ep.load()(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
