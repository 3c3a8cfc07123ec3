"""``python -m benchmarks.start_spread``: how much a start policy's success depends on the prompt.

Why: RL from a start policy can only reweight what the policy already samples. When the start solves
some prompts often and others rarely, the reward separates its good and bad habits and training
amplifies the good ones; when every prompt is solved about equally often (say 30% each, as a guess
among a few plausible answers would be), a reward rarely tells one prompt's right answer from its
wrong ones, and the policy must learn the task's skill itself, which short RL runs do not buy.
Best-of-n still scores well there (one of n samples is often right), so a board where best-of-n
climbs and RL stays flat on one env reads differently once this spread is known.

For each env: ``prompts`` held-out prompts (seeds from ``seed``), ``samples`` completions each at
the sampling temperature, each scored by the env's gold reward; reports the mean, the spread (std)
of the per-prompt success and a histogram of it.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from agents.rl.rollout import RolloutEnv
from llm_gym.commands import CommandParser, run_cli
from llm_gym.models import load_causal_lm, load_tokenizer

BINS = [0.0, 1e-3, 0.1, 0.3, 0.5, 0.7, 0.9, 1 - 1e-3, 1.0 + 1e-9]


@dataclass
class SpreadArguments:
    policy: str = field(metadata={"help": "the start policy (an HF model directory, e.g. a suite's sft-<env>)"})
    env_id: str = field(metadata={"help": "the env whose prompts and gold reward are used"})
    prompts: int = field(default=64, metadata={"help": "held-out prompts"})
    samples: int = field(default=32, metadata={"help": "completions sampled per prompt"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature (the trainers' default)"})
    seed: int = field(default=10_000, metadata={"help": "first prompt seed (the board evaluates from 10,000)"})


def start_spread(args: SpreadArguments) -> dict:
    """Per-prompt mean gold of ``args.samples`` completions each: mean, std, share at 0 and >= 0.5, histogram."""
    model, _ = load_causal_lm(args.policy)
    model.eval()
    env = RolloutEnv(args.env_id, args.prompts * args.samples, torch.device("cpu"), load_tokenizer(args.policy),
                     args.policy)
    try:
        seeds = [args.seed + i // args.samples for i in range(args.prompts * args.samples)]
        rollout = env.rollout(model, seeds, args.temperature, 0, torch.Generator().manual_seed(0))
    finally:
        env.close()
    per_prompt = rollout.gold.view(args.prompts, args.samples).mean(1).double().numpy()
    return {**asdict(args), "mean": float(per_prompt.mean()), "std_over_prompts": float(per_prompt.std()),
            "share_never_solved": float((per_prompt == 0).mean()),
            "share_at_least_half": float((per_prompt >= 0.5).mean()),
            "histogram": {"bins": BINS[:-1] + [1.0], "counts": np.histogram(per_prompt, bins=BINS)[0].tolist()}}


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.start_spread --policy DIR --env_id ID [...]``: options are ``SpreadArguments``'s."""
    parser = CommandParser(SpreadArguments, prog="python -m benchmarks.start_spread",
                           description=__doc__.split("\n\n")[0])
    parser.set_defaults(func=lambda args: print(json.dumps(start_spread(*parser.configs_from(args)), indent=1)) or 0)
    return run_cli(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
