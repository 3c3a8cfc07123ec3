"""Every RL algorithm by name: the one list the command line and the benchmark runner read.

Why one registry: adding an algorithm should be one new file plus one line here, not edits in the
CLI, the benchmark runner and a suite file. An entry says which config dataclass the algorithm
reads (its fields become the command's options), how to build the algorithm from that config, and
what it is in one line. ``make_algorithm`` is the only way the CLI and the runner construct one,
so an unknown name or an option the algorithm does not have is refused in the same words
everywhere.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agents.rl.algorithm import Algorithm
from agents.rl.best_of_n import BestOfN, BestOfNConfig
from agents.rl.dapo import DAPO, DAPOConfig
from agents.rl.dpo import DPO, DPOConfig
from agents.rl.grpo import GRPO, GRPOConfig
from agents.rl.gspo import GSPO, GSPOConfig
from agents.rl.ppo import PPO, PPOConfig
from agents.rl.reinforce import Reinforce, ReinforceConfig
from agents.rl.reinforce_pp import ReinforcePP, ReinforcePPConfig
from agents.rl.rloo import RLOO, RLOOConfig
from agents.rl.sb3 import SB3Agent, SB3Config


@dataclass(frozen=True)
class AlgorithmSpec:
    """One registered algorithm: its config dataclass, a factory ``config -> Algorithm`` and a one-line description."""

    config_class: type
    factory: Callable[[Any], Algorithm]
    description: str


ALGORITHMS: dict[str, AlgorithmSpec] = {
    "ppo": AlgorithmSpec(PPOConfig, PPO, "PPO with a critic, GAE and adaptive KL (Schulman et al. 2017; N+ details)"),
    "reinforce": AlgorithmSpec(ReinforceConfig, Reinforce, "REINFORCE with a moving-average baseline (Williams 1992)"),
    "rloo": AlgorithmSpec(RLOOConfig, RLOO, "REINFORCE leave-one-out over k samples per prompt (Ahmadian et al. 2024)"),
    "grpo": AlgorithmSpec(GRPOConfig, GRPO, "group-normalised advantages, KL in the loss (Shao et al. 2024)"),
    "dapo": AlgorithmSpec(DAPOConfig, DAPO, "GRPO with clip-higher and dynamic sampling (Yu et al. 2025)"),
    "gspo": AlgorithmSpec(GSPOConfig, GSPO, "GRPO with a sequence-level importance ratio (Zheng et al. 2025)"),
    "reinforce++": AlgorithmSpec(ReinforcePPConfig, ReinforcePP, "REINFORCE with global advantage normalisation (Hu 2025)"),
    "best-of-n": AlgorithmSpec(BestOfNConfig, BestOfN, "best of n samples by proxy reward, no training"),
    "dpo": AlgorithmSpec(DPOConfig, DPO, "offline DPO / IPO on pairwise feedback (Rafailov et al. 2023)"),
    "sb3-ppo": AlgorithmSpec(SB3Config, SB3Agent, "stable-baselines3 PPO/A2C from scratch on the token-level env"),
}


def register(name: str, config_class: type, factory: Callable[[Any], Algorithm], description: str) -> None:
    """Add an algorithm (a plugin or a test) under ``name``; an existing name is an error."""
    if name in ALGORITHMS:
        raise ValueError(f"algorithm {name!r} is already registered")
    if not dataclasses.is_dataclass(config_class):
        raise TypeError(f"algorithm {name!r}: config_class must be a dataclass, got {config_class!r}")
    ALGORITHMS[name] = AlgorithmSpec(config_class, factory, description)


def spec(name: str) -> AlgorithmSpec:
    """The entry of ``name``; an unknown name is an error listing the registered ones."""
    if name not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {name!r}; registered: {', '.join(sorted(ALGORITHMS))}")
    return ALGORITHMS[name]


def make_config(name: str, options: dict[str, Any]) -> Any:
    """``name``'s config from keyword options; an option its config lacks is an error naming both."""
    config_class = spec(name).config_class
    fields = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise ValueError(f"algorithm {name!r} has no option(s) {', '.join(unknown)} "
                         f"(its {config_class.__name__} fields: {', '.join(sorted(fields))})")
    return config_class(**options)


def make_algorithm(name: str, config: Any = None, **options: Any) -> Algorithm:
    """Build ``name`` from a config object, or from keyword options for its config."""
    entry = spec(name)
    if config is None:
        config = make_config(name, options)
    elif options:
        raise TypeError("make_algorithm takes a config or options, not both")
    elif not isinstance(config, entry.config_class):
        raise TypeError(f"algorithm {name!r} needs a {entry.config_class.__name__}, got {type(config).__name__}")
    return entry.factory(config)
