"""Best-of-n sampling (Stiennon et al. 2020; Gao et al. 2023, "Scaling Laws for Reward Model
Overoptimization"): no training, the over-optimisation reference point of every RL curve.

For each prompt sample n completions from the start policy and keep the one the proxy reward
likes best; its KL to the start policy is at most log n - (n - 1) / n.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from agents import metrics as M
from agents.rl.algorithm import TrainResult
from agents.rl.config import DEVICE_HELP
from agents.rl.evaluation import append_rollouts, distinct_n, evaluate
from agents.rl.policy import autocast
from agents.rl.rollout import RolloutEnv, iteration_seeds
from agents.rl.run import Run, Timer, setup_of
from llm_gym.models import MIXED_PRECISION_HELP, MixedPrecision, load_causal_lm, resolve_mixed_precision


@dataclass
class BestOfNConfig:
    """What best-of-n samples; it has no optimizer and nothing to checkpoint."""

    model_name_or_path: str | None = field(default=None, metadata={"help": "HF directory of the policy to sample"})
    num_generations: int = field(default=4, metadata={"help": "n: completions sampled per prompt"})
    batch_size: int = field(default=64, metadata={"help": "completions sampled per iteration (num_generations per prompt)"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature"})
    eval_episodes: int = field(default=128, metadata={"help": "held-out prompts of the final evaluation"})
    save_steps: int = field(default=0, metadata={"help": "unused: best-of-n has nothing to checkpoint"})
    device: Literal["auto", "cpu", "cuda"] = field(default="auto", metadata={"help": DEVICE_HELP})
    mixed_precision: MixedPrecision = field(default="auto", metadata={"help": MIXED_PRECISION_HELP})


BEST_OF_N_FILE = "best_of_n.json"


class BestOfN:
    """Best-of-n sampling from the start policy: no training, the over-optimisation reference point.

    ``train`` spends the budget measuring the selected completions (the curve) and writes a policy
    directory that is the start model plus ``best_of_n.json``; ``evaluate`` samples n per prompt and
    reports the completion with the best proxy reward.
    """

    name = "best-of-n"
    config_class = BestOfNConfig

    def __init__(self, config: BestOfNConfig):
        if config.num_generations < 1 or config.batch_size % config.num_generations:
            raise ValueError(f"best-of-n needs num_generations (n) >= 1 dividing batch_size ({config.batch_size}), "
                             f"got {config.num_generations}")
        self.config = config

    def train(self, env_id: str, budget: int, seed: int, out_dir: Path,
              env_kwargs: dict[str, Any] | None = None) -> TrainResult:
        c, n = self.config, self.config.num_generations
        if not c.model_name_or_path:
            raise ValueError("best-of-n: model_name_or_path is not set; give the policy to sample (an HF model directory)")
        num_prompts = c.batch_size // n
        run = Run(self.name, c, out_dir, budget, c.batch_size, setup_of(self.name, c, env_id, env_kwargs, seed))
        model, tokenizer = load_causal_lm(c.model_name_or_path, device=run.device)
        env = RolloutEnv(env_id, c.batch_size, run.device, tokenizer, c.model_name_or_path, env_kwargs)
        run.record_setup()
        policy_dir = run.out_dir / "policy"
        if run.accelerator.is_main_process:
            shutil.copytree(c.model_name_or_path, policy_dir, dirs_exist_ok=True)
            (policy_dir / BEST_OF_N_FILE).write_text(json.dumps({"n": n}))
            (policy_dir / "reference.json").write_text(
                json.dumps({"reference_dir": str(Path(c.model_name_or_path).resolve())}))
        run.reset_log()
        for iteration in range(1, run.iterations + 1):
            with Timer() as t:
                metrics = best_of_n_rollout(model, env, n, num_prompts, seed + iteration * 7_919 + run.rank,
                                            c.temperature, run.mixed_precision)
            run.log(iteration, {**metrics, M.SAMPLES_PER_S: run.samples_per_iteration / t.seconds})
        env.close()
        final = self.evaluate(policy_dir, env_id, c.eval_episodes, seed, env_kwargs) if run.accelerator.is_main_process else {}
        run.close()
        return TrainResult(checkpoint_dir=policy_dir, curve=run.curve, final=final)

    def evaluate(self, policy_dir: Path, env_id: str, episodes: int, seed: int,
                 env_kwargs: dict[str, Any] | None = None, rollouts_path: Path | None = None) -> dict[str, float]:
        """The base policy's perplexity; reward, gold, KL bound, diversity and length of the selected samples
        (appended to ``rollouts_path`` when given, in ``agents.rl.evaluation.append_rollouts``' format)."""
        meta = Path(policy_dir) / BEST_OF_N_FILE
        n = json.loads(meta.read_text())["n"] if meta.is_file() else self.config.num_generations
        base = evaluate(policy_dir, env_id, episodes, seed, env_kwargs, reference_dir=policy_dir,
                        mixed_precision=self.config.mixed_precision)
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        model, tokenizer = load_causal_lm(policy_dir, device=device)
        env = RolloutEnv(env_id, episodes * n, device, tokenizer, policy_dir, {"split": "test", **(env_kwargs or {})})
        selected = best_of_n_rollout(model, env, n, episodes, seed, self.config.temperature,
                                     resolve_mixed_precision(self.config.mixed_precision, device), rollouts_path)
        env.close()
        return {**base, **selected}


@torch.no_grad()
def best_of_n_rollout(model: torch.nn.Module, env: RolloutEnv, n: int, num_prompts: int, seed: int,
                      temperature: float, mixed_precision: str, rollouts_path: Path | None = None) -> dict[str, float]:
    """Sample n completions for each of ``num_prompts`` prompts (``env`` has ``num_prompts * n`` slots)
    and keep the best by proxy reward; ``mixed_precision`` is resolved ("no", "bf16", "fp16"). The kept
    samples are appended to ``rollouts_path`` when given, each with the KL bound as its KL."""
    device = env.device
    generator = torch.Generator(device).manual_seed(seed)
    with autocast(device, mixed_precision):
        batch = env.rollout(model.eval(), iteration_seeds(seed, 0, 0, num_prompts, n), temperature, 0, generator)
    best = batch.score.view(num_prompts, n).argmax(1) + torch.arange(num_prompts, device=device) * n
    lengths = batch.completions.lengths[best]
    sequences = [row[:m] for row, m in zip(batch.completions.ids[best].tolist(), lengths.tolist())]
    kl = math.log(n) - (n - 1) / n  # the analytic upper bound (Stiennon et al. 2020)
    if rollouts_path is not None:
        rows = best.tolist()
        append_rollouts(rollouts_path, [batch.prompts[r] for r in rows], [batch.texts[r] for r in rows],
                        [batch.metadata[r] for r in rows], batch.score[best].tolist(), batch.gold[best].tolist(),
                        [kl] * len(rows))
    return {
        M.REWARD: float(batch.score[best].mean()),
        M.GOLD_REWARD: float(batch.gold[best].mean()),
        M.KL: kl,
        M.EVAL_DISTINCT_1: distinct_n(sequences, 1),
        M.EVAL_DISTINCT_2: distinct_n(sequences, 2),
        M.EPISODE_LENGTH: float(lengths.float().mean()),
    }
