"""Offline DPO (Rafailov et al. 2023, "Direct Preference Optimization: Your Language Model is Secretly a
Reward Model") and IPO (Azar et al. 2023, "A General Theoretical Paradigm to Understand Learning from
Human Preferences") as ``loss_type``, trained on the pairwise feedback files the reward model learns from.

Why here: "PPO on a learned reward vs DPO on the same preferences" is the comparison people make,
so DPO reads the same ``{prompt, chosen, rejected}`` JSONL (``llm_gym.feedback.read_feedback``), starts
from the same SFT model, and is evaluated by the same ``evaluate`` on the env. Prompts are encoded
exactly as the envs encode them and completions end with EOS, as the policy samples them. The
budget counts preference pairs seen; pair order is a function of (seed, epoch), so resume is exact.
IPO uses length-averaged log-probs, as TRL does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from agents import metrics as M
from agents.supervised.data import pad_left, pad_right
from agents.rl.algorithm import TrainResult
from agents.rl.config import DEVICE_HELP
from agents.rl.policy import autocast
from agents.rl.evaluation import evaluate
from agents.rl.losses import dpo_loss, preference_log_ratios
from agents.rl.run import Run, Timer, build_learner, finish, setup_of
from llm_gym.feedback import read_feedback
from llm_gym.models import MIXED_PRECISION_HELP, MixedPrecision
from llm_gym.tokenization import encode_completions, encode_prompts


@dataclass
class DPOConfig:
    """DPO's knobs, with TRL's names."""

    model_name_or_path: str | None = field(default=None, metadata={
        "help": "HF directory of the start policy (the SFT model); also the reference unless ref_model_name_or_path is set"})
    ref_model_name_or_path: str | None = field(default=None, metadata={
        "help": "HF directory of the reference model (default: model_name_or_path)"})
    dataset_name: str | None = field(default=None, metadata={
        "help": "JSONL of preference pairs {prompt, chosen, rejected} (e.g. from `llm-gym feedback`)"})
    beta: float = field(default=0.1, metadata={"help": "strength of the KL regularisation (DPO's beta)"})
    loss_type: Literal["sigmoid", "ipo"] = field(default="sigmoid", metadata={"help": "sigmoid = DPO, ipo = IPO"})
    learning_rate: float = field(default=1e-4, metadata={"help": "AdamW learning rate"})
    batch_size: int = field(default=16, metadata={"help": "preference pairs per optimizer step and process"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping norm"})
    lora_r: int = field(default=0, metadata={"help": "LoRA rank (0: train all weights)"})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha"})
    save_steps: int = field(default=10, metadata={"help": "checkpoint every N steps (0: never)"})
    eval_episodes: int = field(default=128, metadata={"help": "held-out episodes of the final evaluation"})
    device: Literal["auto", "cpu", "cuda"] = field(default="auto", metadata={"help": DEVICE_HELP})
    mixed_precision: MixedPrecision = field(default="auto", metadata={"help": MIXED_PRECISION_HELP})


class DPO:
    """The ``Algorithm`` for offline DPO / IPO; ``budget`` counts preference pairs."""

    name = "dpo"
    config_class = DPOConfig

    def __init__(self, config: DPOConfig):
        if config.beta <= 0:
            raise ValueError(f"dpo: beta must be > 0, got {config.beta}")
        self.config = config

    def evaluate(self, policy_dir: Path, env_id: str, episodes: int, seed: int,
                 env_kwargs: dict[str, Any] | None = None, rollouts_path: Path | None = None) -> dict[str, float]:
        return evaluate(policy_dir, env_id, episodes, seed, env_kwargs, rollouts_path=rollouts_path,
                        mixed_precision=self.config.mixed_precision)

    def train(self, env_id: str, budget: int, seed: int, out_dir: Path,
              env_kwargs: dict[str, Any] | None = None) -> TrainResult:
        c = self.config
        if not c.model_name_or_path or not c.dataset_name:
            raise ValueError("dpo: set model_name_or_path (the start policy) and dataset_name (a preference JSONL)")
        pairs = read_feedback(c.dataset_name).pairs
        if not pairs:
            raise ValueError(f"dpo: {c.dataset_name} holds no preference pairs (DPO needs {{prompt, chosen, rejected}} rows)")
        run = Run(self.name, c, out_dir, budget, c.batch_size, setup_of(self.name, c, env_id, env_kwargs, seed, frozenset(
            {"save_steps", "eval_episodes"})))
        learner = build_learner(run, c, env_id, env_kwargs, 1, "none", seed)
        model, optimizer, tok = learner.model, learner.optimizer, learner.tokenizer
        start = run.resume(model, optimizer, {})
        for step in range(start + 1, run.iterations + 1):
            with Timer() as timer:
                batch = [pairs[i] for i in self._indices(step, len(pairs), seed, run.rank, run.world)]
                prompts = encode_prompts(tok, [p.prompt for p in batch]) * 2
                answers = [ids + [tok.eos_token_id] for ids in
                           encode_completions(tok, [p.chosen for p in batch] + [p.rejected for p in batch])]
                P, P_mask = (t.to(run.device) for t in pad_left(prompts, tok.pad_token_id))
                ids = pad_right(answers, tok.pad_token_id).to(run.device)
                mask = pad_right([[1] * len(a) for a in answers], 0).to(run.device)
                with torch.no_grad(), autocast(run.device, run.mixed_precision):
                    ref = learner.reference.logprobs(P, P_mask, ids, mask, 1.0)
                model.train()
                with autocast(run.device, run.mixed_precision):
                    scores, _ = model(P, P_mask, ids, mask)
                chosen, rejected = preference_log_ratios(scores.logprobs, ref, mask, c.loss_type == "ipo")
                loss = dpo_loss(chosen, rejected, c.beta, c.loss_type).mean()
                run.check_finite(step, "loss", loss)
                optimizer.zero_grad()
                run.accelerator.backward(loss)
                run.accelerator.clip_grad_norm_(model.parameters(), c.max_grad_norm)
                optimizer.step()
            margin = (c.beta * (chosen - rejected)).detach()
            chosen_logp, rejected_logp = (scores.logprobs.detach() * mask).sum(1).chunk(2)
            run.log(step, {M.TRAIN_LOSS: float(loss.detach()), M.DPO_MARGIN: float(margin.mean()),
                           M.DPO_ACCURACY: float((margin > 0).float().mean()),
                           M.DPO_LOGPS_CHOSEN: float(chosen_logp.mean()), M.DPO_LOGPS_REJECTED: float(rejected_logp.mean()),
                           M.SAMPLES_PER_S: run.samples_per_iteration / timer.seconds})
            run.save(step, model, optimizer, {})
        return finish(run, learner, c, env_id, seed, env_kwargs, self.evaluate)

    def _indices(self, step: int, n: int, seed: int, rank: int, world: int) -> list[int]:
        """This process's pairs of ``step``: consecutive slices of a per-epoch permutation (seed, epoch)."""
        size = self.config.batch_size
        first = ((step - 1) * world + rank) * size
        orders: dict[int, torch.Tensor] = {}
        out = []
        for position in range(first, first + size):
            epoch, offset = divmod(position, n)
            if epoch not in orders:
                orders[epoch] = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
            out.append(int(orders[epoch][offset]))
        return out
