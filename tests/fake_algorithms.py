"""Stand-ins for a learner that the benchmark tests' grids run (as ``fake_algorithms:FakeAlgorithm``).

Their own module, importing only ``agents.rl.algorithm``: every run of a grid starts a fresh process
that imports its algorithm's module, and a test module would bring the runner, the CLI and every
trainer with it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from agents.rl.algorithm import TrainResult


@dataclass
class FakeConfig:
    calls_log: str  # every train() appends one JSON line here
    slope: float = 0.5
    fail_seed: int = -1  # train() raises for this seed
    extra: dict | None = None  # merged into evaluate()'s metrics (to feed the runner bad values)
    drop_step: bool = False  # log curve points without "step"


class FakeAlgorithm:
    """Deterministic stand-in for a learner: gold reward rises linearly with samples seen."""

    name = "fake"

    def __init__(self, config: FakeConfig):
        self.config = config

    def train(self, env_id, budget, seed, out_dir, env_kwargs=None) -> TrainResult:
        c = self.config
        with open(c.calls_log, "a") as f:
            f.write(json.dumps({"env_id": env_id, "seed": seed, "pid": os.getpid(), "env_kwargs": env_kwargs}) + "\n")
        if seed == c.fail_seed:
            raise RuntimeError(f"fake divergence at seed {seed}")
        policy = Path(out_dir) / "policy"
        policy.mkdir(parents=True, exist_ok=True)
        (policy / "params.json").write_text(json.dumps({"gold": c.slope + 0.01 * seed}))
        steps = [0, budget // 2, budget]
        curve = [{"step": s, "objective/gold_reward": c.slope * s / budget + 0.01 * seed, "objective/kl": 0.1 * s / budget}
                 for s in steps]
        if c.drop_step:
            curve = [{k: v for k, v in p.items() if k != "step"} for p in curve]
        return TrainResult(checkpoint_dir=policy, curve=curve, final={})

    def evaluate(self, policy_dir, env_id, episodes, seed, env_kwargs=None) -> dict[str, float]:
        gold = json.loads((Path(policy_dir) / "params.json").read_text())["gold"]
        return {"objective/gold_reward": gold, "objective/reward": gold + 0.2, "objective/kl": 0.1,
                "eval/episodes": episodes, "eval/seed": seed, "eval/test_split": float(env_kwargs.get("split") == "test"),
                **(self.config.extra or {})}


class FakeRolloutAlgorithm(FakeAlgorithm):
    """``FakeAlgorithm`` whose ``evaluate`` appends its completions to ``rollouts_path`` like the real learners."""

    def evaluate(self, policy_dir, env_id, episodes, seed, env_kwargs=None, rollouts_path=None) -> dict[str, float]:
        metrics = super().evaluate(policy_dir, env_id, episodes, seed, env_kwargs)
        if rollouts_path is not None:
            with open(rollouts_path, "a") as f:
                for i in range(episodes):  # completion length depends on the evaluation seed
                    f.write(json.dumps({"prompt": f"{env_id} #{i}", "completion": "x" * (1 + (seed + i) % 4),
                                        "proxy": 0.5, "gold": 0.25, "kl": 0.0}) + "\n")
        return metrics
