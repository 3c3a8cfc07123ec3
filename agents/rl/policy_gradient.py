"""Critic-free policy-gradient baselines on PPO's rollout engine: REINFORCE, RLOO, GRPO, and best-of-n.

Why one file: the three trainers differ only in how a completion's score becomes its advantage
(and where the KL leash goes); sampling, scoring, the clipped token-level surrogate, checkpoints
and logging are identical, so they are written once and each algorithm is a small
``advantages`` function below. Best-of-n trains nothing: it is the no-learning reference point
for over-optimisation (how much proxy reward is bought by selecting among n samples, at a KL of
at most ``log n - (n - 1) / n``; Stiennon et al. 2020).

- REINFORCE with baseline (Williams 1992): R = score - β·KL(sequence); A = R - b, b a moving
  average of R (one sample per prompt).
- RLOO (Ahmadian et al. 2024): k samples per prompt, A_i = R_i - mean of the other k - 1 R_j.
- GRPO (Shao et al. 2024): A_i = (score_i - mean) / std within the group; the KL (k3 estimator)
  is a loss term, not a reward penalty.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from agents.rl.algorithm import TrainResult
from agents.rl.estimators import kl_penalty, masked_mean
from agents.rl.evaluation import distinct_n, evaluate
from agents.rl.logprobs import token_logprobs
from agents.rl.policy import autocast
from agents.rl.rollout import RolloutEnv, iteration_seeds
from agents.rl.loop import Run, Timer, build_learner, finish, iteration_generator
from llm_gym.models import load_causal_lm

PGAlgo = Literal["reinforce", "rloo", "grpo"]


@dataclass
class PGConfig:
    """Knobs shared by REINFORCE, RLOO, GRPO and best-of-n (``group_size`` is n for best-of-n)."""

    policy_dir: str  # the SFT model: the start policy and, unless reference_dir is set, the KL reference
    reference_dir: str | None = None
    num_prompts: int = 16  # prompts per iteration and process
    group_size: int = 4  # completions per prompt (REINFORCE uses 1 whatever this says)
    mini_batch_size: int = 32  # completions per optimizer step
    epochs: int = 1  # passes over each batch (GRPO's mu); 1 is purely on-policy
    lr: float = 1e-4
    temperature: float = 1.0
    top_k: int = 0
    kl_coef: float = 0.05
    cliprange: float = 0.2
    baseline_decay: float = 0.9  # REINFORCE's moving-average baseline
    missing_eos_penalty: float = 1.0
    max_grad_norm: float = 1.0
    lora_r: int = 0
    lora_alpha: int = 16
    checkpoint_every: int = 10
    eval_episodes: int = 128


class MovingBaseline:
    """REINFORCE's baseline: an exponential moving average of the mean return, checkpointed with the run."""

    def __init__(self, decay: float):
        self.decay, self.value, self.initialised = decay, 0.0, False

    def update(self, mean_return: float) -> None:
        self.value = mean_return if not self.initialised else self.decay * self.value + (1 - self.decay) * mean_return
        self.initialised = True

    def state_dict(self) -> dict[str, Any]:
        return {"value": self.value, "initialised": self.initialised}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.value, self.initialised = float(state["value"]), bool(state["initialised"])


def advantages(algo: PGAlgo, score: torch.Tensor, kl_seq: torch.Tensor, group_size: int, kl_coef: float,
               baseline: MovingBaseline, mean: Callable[[torch.Tensor], float] = lambda x: float(x.mean())
               ) -> torch.Tensor:
    """One advantage per completion; completions of a prompt are ``group_size`` consecutive rows.

    ``mean`` averages over the whole batch (all processes under accelerate), so REINFORCE's baseline
    is the same on every process."""
    if algo == "grpo":
        groups = score.view(-1, group_size)
        normalised = (groups - groups.mean(1, keepdim=True)) / (groups.std(1, keepdim=True) + 1e-4)
        return normalised.flatten()
    returns = score - kl_coef * kl_seq
    if algo == "rloo":
        groups = returns.view(-1, group_size)
        others = (groups.sum(1, keepdim=True) - groups) / (group_size - 1)
        return (groups - others).flatten()
    if algo == "reinforce":
        batch_mean = mean(returns)
        baseline_value = baseline.value if baseline.initialised else batch_mean
        baseline.update(batch_mean)
        return returns - baseline_value
    raise ValueError(f"unknown policy-gradient algorithm {algo!r}")


class PolicyGradient:
    """The ``Algorithm`` for REINFORCE / RLOO / GRPO (see ``agents.rl.algorithm``); ``algo`` picks which."""

    def __init__(self, algo: PGAlgo, config: PGConfig):
        if algo not in ("reinforce", "rloo", "grpo"):
            raise ValueError(f"unknown policy-gradient algorithm {algo!r}; use reinforce, rloo or grpo")
        self.name, self.config = algo, config
        self.group_size = 1 if algo == "reinforce" else config.group_size
        if self.group_size < 2 and algo != "reinforce":
            raise ValueError(f"{algo} needs group_size >= 2 (it compares completions of the same prompt)")
        if (config.num_prompts * self.group_size) % config.mini_batch_size:
            raise ValueError(
                f"num_prompts x group_size ({config.num_prompts * self.group_size}) must be a multiple of "
                f"mini_batch_size ({config.mini_batch_size})"
            )

    def evaluate(self, policy_dir: Path, env_id: str, episodes: int, seed: int,
                 env_kwargs: dict[str, Any] | None = None) -> dict[str, float]:
        return evaluate(policy_dir, env_id, episodes, seed, env_kwargs)

    def train(self, env_id: str, budget: int, seed: int, out_dir: Path,
              env_kwargs: dict[str, Any] | None = None) -> TrainResult:
        c, k = self.config, self.group_size
        batch_size = c.num_prompts * k
        compat = {"policy_dir": str(Path(c.policy_dir).resolve()), "lora_r": c.lora_r, "batch_size": batch_size,
                  "env_id": env_id, "seed": seed}
        run = Run(self.name, c, out_dir, budget, batch_size, compat)
        learner = build_learner(run, c, env_id, env_kwargs, batch_size, "none", seed)
        model, policy, env, optimizer = learner.model, learner.policy, learner.env, learner.optimizer
        baseline = MovingBaseline(c.baseline_decay)
        start = run.resume(model, optimizer, {"baseline": baseline})

        for iteration in range(start + 1, run.iterations + 1):
            generator = iteration_generator(run.device, seed, iteration, run.rank)
            with Timer() as iteration_time:
                model.eval()
                with Timer() as sample_time, autocast(run.device):
                    try:
                        seeds = iteration_seeds(seed, iteration, run.rank, c.num_prompts, k)
                        batch = env.rollout(policy.lm, seeds, c.temperature, c.top_k, generator)
                    except ValueError as err:
                        raise run.reward_failed(iteration, err) from err
                P, done = batch.prompt_ids, batch.completions
                ids, mask = done.ids, done.mask.float()
                run.check_finite(iteration, "objective/reward", batch.score)
                with torch.no_grad(), autocast(run.device):
                    old_logprobs, ref_logprobs = [], []
                    for s in range(0, batch_size, c.mini_batch_size):
                        sl = slice(s, s + c.mini_batch_size)
                        logits, _ = model(P[sl], batch.prompt_mask[sl], ids[sl], done.mask[sl])
                        old_logprobs.append(token_logprobs(logits, ids[sl], c.temperature))
                        ref_logprobs.append(learner.reference.logprobs(
                            P[sl], batch.prompt_mask[sl], ids[sl], done.mask[sl], c.temperature))
                    old_logprobs, ref_logprobs = torch.cat(old_logprobs) * mask, torch.cat(ref_logprobs) * mask
                kl_seq = (kl_penalty(old_logprobs, ref_logprobs, "k1") * mask).sum(1)
                score = batch.score - c.missing_eos_penalty * (~done.ended).float()
                adv = advantages(self.name, score, kl_seq, k, c.kl_coef, baseline, run.mean)[:, None]

                model.train()
                stats: dict[str, list[float]] = {"pg": [], "clip": [], "approx_kl": [], "kl_loss": []}
                for _ in range(c.epochs):
                    order = torch.randperm(batch_size, generator=generator, device=run.device)
                    for m in range(0, batch_size, c.mini_batch_size):
                        i = order[m : m + c.mini_batch_size]
                        with autocast(run.device):
                            logits, _ = model(P[i], batch.prompt_mask[i], ids[i], done.mask[i])
                        logprobs = token_logprobs(logits, ids[i], c.temperature)
                        log_ratio = (logprobs - old_logprobs[i]) * mask[i]
                        ratio = torch.exp(log_ratio)
                        pg_losses = torch.max(-adv[i] * ratio, -adv[i] * ratio.clamp(1 - c.cliprange, 1 + c.cliprange))
                        # deviation: token-level mean over the minibatch (Dr. GRPO / DAPO) rather than a
                        # per-sequence mean, so long and short answers weigh by their tokens, not their count
                        loss = masked_mean(pg_losses, mask[i])
                        if self.name == "grpo":
                            kl_loss = masked_mean(kl_penalty(logprobs, ref_logprobs[i], "k3"), mask[i])
                            loss = loss + c.kl_coef * kl_loss
                            stats["kl_loss"].append(float(kl_loss.detach()))
                        run.check_finite(iteration, "loss", loss)
                        optimizer.zero_grad()
                        run.accelerator.backward(loss)
                        run.accelerator.clip_grad_norm_(model.parameters(), c.max_grad_norm)
                        optimizer.step()
                        stats["pg"].append(float(loss.detach()))
                        stats["clip"].append(float(masked_mean((pg_losses > -adv[i] * ratio).float(), mask[i])))
                        stats["approx_kl"].append(float(0.5 * masked_mean(log_ratio**2, mask[i])))

            entropy = -float(masked_mean(old_logprobs, mask))  # sampled-token estimate (no full softmax kept)
            run.log(iteration, {
                "objective/reward": float(batch.score.mean()),
                "objective/gold_reward": float(batch.gold.mean()),
                "objective/kl": float(kl_seq.mean()),
                "objective/kl_coef": c.kl_coef,
                "policy/entropy": entropy,
                "policy/clipfrac": float(np.mean(stats["clip"])),
                "policy/approx_kl": float(np.mean(stats["approx_kl"])),
                "loss/policy": float(np.mean(stats["pg"])),
                "episode/length": float(done.lengths.float().mean()),
                "perf/tokens_per_s": float(done.mask.sum()) * run.world / sample_time.seconds,
                "perf/samples_per_s": run.samples_per_iteration / iteration_time.seconds,
            })
            run.save(iteration, model, optimizer, {"baseline": baseline})
        return finish(run, learner, c, env_id, seed, env_kwargs, self.evaluate)


BEST_OF_N_FILE = "best_of_n.json"


class BestOfN:
    """Best-of-n sampling from the start policy: no training, the over-optimisation reference point.

    ``train`` spends the budget measuring the selected completions (the curve) and writes a policy
    directory that is the start model plus ``best_of_n.json``; ``evaluate`` samples n per prompt and
    reports the completion with the best proxy reward.
    """

    name = "best-of-n"

    def __init__(self, config: PGConfig):
        if config.group_size < 1:
            raise ValueError(f"best-of-n needs group_size (n) >= 1, got {config.group_size}")
        self.config = config

    def train(self, env_id: str, budget: int, seed: int, out_dir: Path,
              env_kwargs: dict[str, Any] | None = None) -> TrainResult:
        c, n = self.config, self.config.group_size
        config = PGConfig(**{**c.__dict__, "checkpoint_every": 0})  # nothing to checkpoint
        run = Run(self.name, config, out_dir, budget, c.num_prompts * n, {"policy_dir": c.policy_dir})
        policy_dir = run.out_dir / "policy"
        if run.accelerator.is_main_process:
            shutil.copytree(c.policy_dir, policy_dir, dirs_exist_ok=True)
            (policy_dir / BEST_OF_N_FILE).write_text(json.dumps({"n": n}))
            (policy_dir / "reference.json").write_text(json.dumps({"reference_dir": str(Path(c.policy_dir).resolve())}))
        run.reset_log()
        model, tokenizer = load_causal_lm(c.policy_dir, device=run.device)
        env = RolloutEnv(env_id, c.num_prompts * n, run.device, tokenizer, c.policy_dir, env_kwargs)
        for iteration in range(1, run.iterations + 1):
            with Timer() as t:
                metrics = best_of_n_rollout(model, env, n, c.num_prompts, seed + iteration * 7_919 + run.rank,
                                            c.temperature)
            run.log(iteration, {**metrics, "perf/samples_per_s": run.samples_per_iteration / t.seconds})
        env.close()
        final = self.evaluate(policy_dir, env_id, c.eval_episodes, seed, env_kwargs) if run.accelerator.is_main_process else {}
        run.close()
        return TrainResult(checkpoint_dir=policy_dir, curve=run.curve, final=final)

    def evaluate(self, policy_dir: Path, env_id: str, episodes: int, seed: int,
                 env_kwargs: dict[str, Any] | None = None) -> dict[str, float]:
        """The base policy's perplexity; reward, gold, KL bound, diversity and length of the selected samples."""
        meta = Path(policy_dir) / BEST_OF_N_FILE
        n = json.loads(meta.read_text())["n"] if meta.is_file() else self.config.group_size
        base = evaluate(policy_dir, env_id, episodes, seed, env_kwargs, reference_dir=policy_dir)
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        model, tokenizer = load_causal_lm(policy_dir, device=device)
        env = RolloutEnv(env_id, episodes * n, device, tokenizer, policy_dir, {"split": "test", **(env_kwargs or {})})
        selected = best_of_n_rollout(model, env, n, episodes, seed, self.config.temperature)
        env.close()
        return {**base, **selected}


@torch.no_grad()
def best_of_n_rollout(model: torch.nn.Module, env: RolloutEnv, n: int, num_prompts: int, seed: int,
                      temperature: float) -> dict[str, float]:
    """Sample n completions for each of ``num_prompts`` prompts (``env`` has ``num_prompts * n`` slots)
    and keep the best by proxy reward."""
    device = env.device
    generator = torch.Generator(device).manual_seed(seed)
    with autocast(device):
        batch = env.rollout(model.eval(), iteration_seeds(seed, 0, 0, num_prompts, n), temperature, 0, generator)
    best = batch.score.view(num_prompts, n).argmax(1) + torch.arange(num_prompts, device=device) * n
    lengths = batch.completions.lengths[best]
    sequences = [row[:m] for row, m in zip(batch.completions.ids[best].tolist(), lengths.tolist())]
    return {
        "objective/reward": float(batch.score[best].mean()),
        "objective/gold_reward": float(batch.gold[best].mean()),
        "objective/kl": math.log(n) - (n - 1) / n,  # the analytic upper bound (Stiennon et al. 2020)
        "eval/distinct_1": distinct_n(sequences, 1),
        "eval/distinct_2": distinct_n(sequences, 2),
        "episode/length": float(lengths.float().mean()),
    }
