"""The one on-policy loop: rollout -> score through the env -> advantages -> epochs x minibatches x
micro-batches -> log -> checkpoint. Algorithms subclass ``OnPolicyAlgorithm`` and supply only their math.

Why this shape: it is SB3's ``OnPolicyAlgorithm.learn`` / ``train()`` split. The loop owns everything
that is the same for PPO, REINFORCE, RLOO, GRPO and their variants — sampling with the KV cache,
scoring through the env, the frozen reference, the behaviour log-probs, minibatching, gradient
accumulation, clipping, logging, atomic checkpoints, exact resume, callbacks and non-finite checks.
An algorithm file says how scores become advantages (``advantages``), what its loss is (``loss``, by
default the clipped surrogate), whether it has a critic (``critic``) and what state it checkpoints
(``state``), and so reads top to bottom like a CleanRL file.

Speed: when each batch is used once (one epoch, one minibatch) the behaviour log-probs equal the
current ones, so the extra no-grad policy forward is skipped and the ratio is taken against the
detached log-probs of the update forward (the KL in the reward then uses the sampler's log-probs,
computed from the same temperature-scaled logits). With a shared critic the policy and the value
come from one forward. Rows that share a prompt (a group) run the prompt once and fan its KV cache out
(``agents.rl.policy.completion_hidden``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from agents import metrics as M
from agents.rl.algorithm import TrainResult
from agents.rl.callbacks import IterationReport, TrainingCallback
from agents.rl.config import RESUMABLE_FIELDS, RLConfig
from agents.rl.estimators import kl_penalty, masked_mean, missing_eos_penalty
from agents.rl.evaluation import evaluate
from agents.rl.losses import aggregate, clipped_surrogate
from agents.rl.policy import ValueModel, autocast
from agents.rl.rollout import iteration_seeds
from agents.rl.run import Run, Timer, build_learner, finish, iteration_generator, setup_of


@dataclass
class ScoredBatch:
    """One iteration's completions after scoring: what ``advantages`` turns into advantages. (B, T) tensors
    are zero past each completion's end; completions of one prompt are ``group_size`` consecutive rows."""

    score: torch.Tensor  # (B,) proxy reward after the missing-EOS penalty
    mask: torch.Tensor  # (B, T) 1.0 on real completion tokens (EOS included)
    logprobs: torch.Tensor  # (B, T) behaviour log-probs
    kl: torch.Tensor  # (B, T) per-token KL(policy || reference) estimate (kl_estimator); zeros without a reference
    values: torch.Tensor | None  # (B, T) critic values before the update
    group_size: int
    samples: int  # completions in the batch over all processes
    mean: Callable[[torch.Tensor], float]  # the mean over the whole batch on all processes
    metrics: dict[str, float] = field(default_factory=dict)  # what the algorithm wants logged


@dataclass
class MiniBatch:
    """One micro-batch of an update, what ``loss`` sees; ``tokens`` and ``rows`` count its whole minibatch."""

    logprobs: torch.Tensor  # (b, T) current log-probs, with gradient
    old_logprobs: torch.Tensor  # (b, T) behaviour log-probs
    ref_logprobs: torch.Tensor | None  # (b, T) reference log-probs, None without a reference
    advantages: torch.Tensor  # (b, T)
    mask: torch.Tensor  # (b, T)
    entropy: torch.Tensor  # (b, T) per-token entropy (with gradient when entropy_coef > 0)
    values: torch.Tensor | None = None  # (b, T) current values, with gradient
    old_values: torch.Tensor | None = None
    returns: torch.Tensor | None = None
    tokens: float = 0.0
    rows: int = 0
    max_tokens: int = 0  # the env's completion window (Dr. GRPO's constant)


class OnPolicyAlgorithm:
    """Base of every on-policy algorithm; implements ``agents.rl.algorithm.Algorithm``.

    Subclasses set ``name`` and ``config_class`` and implement ``advantages``; they may override
    ``critic``, ``uses_reference``, ``state``, ``keep``, ``importance_log_ratio`` and ``loss``.
    """

    name: ClassVar[str]
    config_class: ClassVar[type[RLConfig]] = RLConfig

    def __init__(self, config: RLConfig):
        c = self.config = config
        if c.num_generations < 1 or c.batch_size % c.num_generations:
            raise ValueError(f"{self.name}: batch_size ({c.batch_size}) must be a positive multiple of "
                             f"num_generations ({c.num_generations})")
        sizes = (c.num_mini_batches, c.gradient_accumulation_steps, c.num_ppo_epochs, c.local_rollout_forward_batch_size)
        if min(sizes) < 1:
            raise ValueError(f"{self.name}: num_mini_batches, gradient_accumulation_steps, num_ppo_epochs and "
                             "local_rollout_forward_batch_size must be >= 1")
        if c.num_mini_batches * c.gradient_accumulation_steps > c.batch_size:
            raise ValueError(f"{self.name}: num_mini_batches x gradient_accumulation_steps "
                             f"({c.num_mini_batches * c.gradient_accumulation_steps}) exceeds batch_size ({c.batch_size})")
        if c.epsilon <= 0 or c.clip_high <= 0:  # epsilon >= 1 leaves the ratio unclipped from below: allowed
            raise ValueError(f"{self.name}: the importance ratio is clipped to [1 - epsilon, 1 + epsilon_high]: epsilon "
                             f"and epsilon_high must be > 0, got {c.epsilon} and {c.epsilon_high}")
        if c.kl_coef < 0:
            raise ValueError(f"{self.name}: kl_coef (GRPO's beta) must be >= 0, got {c.kl_coef}: a negative one rewards "
                             "moving away from the reference")
        if c.temperature == 0 and c.num_generations > 1:
            raise ValueError(f"{self.name}: temperature 0 is greedy decoding, so the {c.num_generations} completions of "
                             "a prompt would be identical and their group advantages zero; sample with temperature > 0")

    # ------------------------------------------------------------------ what an algorithm supplies
    def critic(self) -> ValueModel:
        """``"shared"`` / ``"separate"`` value head, or ``"none"`` (critic-free)."""
        return "none"

    def uses_reference(self) -> bool:
        """Whether a reference model is loaded (a KL term in the reward or the loss)."""
        return self.config.kl_coef > 0

    def state(self) -> dict[str, Any]:
        """Objects with ``state_dict``/``load_state_dict`` checkpointed with the run (a KL controller...)."""
        return {}

    def keep(self, batch: ScoredBatch) -> torch.Tensor | None:
        """Rows to train on (a bool mask), or None for all; DAPO drops uninformative groups here."""
        return None

    def advantages(self, batch: ScoredBatch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Advantages, (B,) or (B, T), and the value targets (B, T) for a critic (else None)."""
        raise NotImplementedError

    def importance_log_ratio(self, log_ratio: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The log importance ratio that gets clipped: per token by default (GSPO: per sequence)."""
        return log_ratio

    def loss(self, mb: MiniBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The clipped surrogate minus the entropy bonus, averaged as ``config.loss_type`` says; returns the
        loss and the terms to log (each this micro-batch's share of the minibatch value)."""
        c = self.config
        log_ratio = self.importance_log_ratio((mb.logprobs - mb.old_logprobs) * mb.mask, mb.mask)
        pg, clipped = clipped_surrogate(log_ratio, mb.advantages, c.epsilon, c.clip_high)

        def mean(x: torch.Tensor) -> torch.Tensor:
            return aggregate(x, mb.mask, c.loss_type, mb.tokens, mb.rows, mb.max_tokens)

        policy_loss, entropy = mean(pg), mean(mb.entropy)
        loss = policy_loss - c.entropy_coef * entropy
        return loss, {M.POLICY_LOSS: policy_loss, M.ENTROPY: entropy, M.CLIPFRAC: mean(clipped),
                      M.APPROX_KL: mean(0.5 * log_ratio**2)}

    # ------------------------------------------------------------------------------- the loop
    def evaluate(self, policy_dir: Path, env_id: str, episodes: int, seed: int,
                 env_kwargs: dict[str, Any] | None = None, rollouts_path: Path | None = None) -> dict[str, float]:
        return evaluate(policy_dir, env_id, episodes, seed, env_kwargs, rollouts_path=rollouts_path,
                        mixed_precision=self.config.mixed_precision)

    def train(self, env_id: str, budget: int, seed: int, out_dir: Path, env_kwargs: dict[str, Any] | None = None,
              callbacks: Sequence[TrainingCallback] = ()) -> TrainResult:
        """Spend ``budget`` sampled completions; resume from ``out_dir``'s newest checkpoint if there is one."""
        c = self.config
        if not c.model_name_or_path:
            raise ValueError(f"{self.name}: model_name_or_path is not set; give the start policy (an HF model directory)")
        run = Run(self.name, c, out_dir, budget, c.batch_size,
                  setup_of(self.name, c, env_id, env_kwargs, seed, RESUMABLE_FIELDS))
        learner = build_learner(run, c, env_id, env_kwargs, c.batch_size, self.critic(), seed, self.uses_reference())
        model, optimizer, state = learner.model, learner.optimizer, self.state()
        start = run.resume(model, optimizer, state)
        for iteration in range(start + 1, run.iterations + 1):
            generator = iteration_generator(run.device, seed, iteration, run.rank)
            with Timer() as iteration_time:
                model.eval()
                with Timer() as sample_time, autocast(run.device, run.mixed_precision):
                    try:  # the env validates rewards: NaN/inf from a reward function arrive here
                        seeds = iteration_seeds(seed, iteration, run.rank, c.batch_size // c.num_generations,
                                                c.num_generations)
                        rollout = learner.env.rollout(learner.policy.lm, seeds, c.temperature, c.top_k, generator,
                                                      c.compile_sampler)
                    except ValueError as err:
                        raise run.reward_failed(iteration, err) from err
                run.check_finite(iteration, M.REWARD, rollout.score)
                batch, old_logprobs, ref_logprobs = self._score(run, learner, rollout)
                advantages, returns = self.advantages(batch)
                if advantages.dim() == 1:
                    advantages = advantages[:, None].expand_as(batch.mask)
                run.check_finite(iteration, "advantages", advantages)
                model.train()
                stats = self._update(run, learner, iteration, rollout, batch, advantages, returns, old_logprobs,
                                     ref_logprobs, generator)
            done = rollout.completions
            row = {
                M.REWARD: float(rollout.score.mean()),
                M.GOLD_REWARD: float(rollout.gold.mean()),
                M.KL_COEF: c.kl_coef,
                M.SCORES_WITH_EOS_PENALTY: float(batch.score.mean()),
                M.EPISODE_LENGTH: float(done.lengths.float().mean()),
                M.EOS_FRACTION: float(done.ended.float().mean()),
                M.TOKENS_PER_S: float(done.mask.sum()) * run.world / sample_time.seconds,
                M.SAMPLES_PER_S: run.samples_per_iteration / iteration_time.seconds,
                **({M.KL: float(batch.kl.sum(1).mean())} if learner.reference is not None else {}),
                **stats, **batch.metrics,
            }
            report = IterationReport(iteration, iteration * run.samples_per_iteration, rollout.prompts, rollout.texts,
                                     rollout.metadata, rollout.score.cpu().numpy(), rollout.gold.cpu().numpy(), row)
            stop = run.any(any([bool(callback.on_iteration_end(report)) for callback in callbacks]))
            run.log(iteration, report.metrics)
            run.save(iteration, model, optimizer, state, force=stop)
            if stop:
                break
        return finish(run, learner, c, env_id, seed, env_kwargs, self.evaluate)

    @torch.no_grad()
    def _score(self, run: Run, learner, rollout) -> tuple[ScoredBatch, torch.Tensor | None, torch.Tensor | None]:
        """Behaviour log-probs, values and reference log-probs in one no-grad pass; KL; the EOS penalty.

        Returns the batch and the behaviour / reference log-probs the update needs (behaviour None when
        each batch is used once: the update then uses its own detached log-probs)."""
        c, done = self.config, rollout.completions
        mask = done.mask.float()
        reused = c.num_ppo_epochs > 1 or c.num_mini_batches > 1
        need_policy = reused or self.critic() != "none"
        chunk = min(c.batch_size, c.local_rollout_forward_batch_size)
        logprobs, values, ref_logprobs = [], [], []
        with autocast(run.device, run.mixed_precision):
            for s in range(0, c.batch_size, chunk):
                sl = slice(s, s + chunk)
                args = (rollout.prompt_ids[sl], rollout.prompt_mask[sl], done.ids[sl], done.mask[sl])
                if need_policy:
                    scores, value = learner.model(*args, c.temperature)
                    logprobs.append(scores.logprobs)
                    if value is not None:
                        values.append(value.float())
                if learner.reference is not None:
                    ref_logprobs.append(learner.reference.logprobs(*args, c.temperature))
        behaviour = torch.cat(logprobs) * mask if need_policy else None
        reference = torch.cat(ref_logprobs) * mask if ref_logprobs else None
        sampled = behaviour if behaviour is not None else done.logprobs.float() * mask
        kl = kl_penalty(sampled, reference, c.kl_estimator) * mask if reference is not None else torch.zeros_like(mask)
        batch = ScoredBatch(
            score=missing_eos_penalty(rollout.score, done.ended, c.missing_eos_penalty), mask=mask, logprobs=sampled,
            kl=kl, values=torch.cat(values) * mask if values else None, group_size=c.num_generations,
            samples=run.samples_per_iteration, mean=run.mean)
        return batch, (behaviour if reused else None), reference

    def _update(self, run: Run, learner, iteration: int, rollout, batch: ScoredBatch, advantages: torch.Tensor,
                returns: torch.Tensor | None, old_logprobs: torch.Tensor | None, ref_logprobs: torch.Tensor | None,
                generator: torch.Generator) -> dict[str, float]:
        """``num_ppo_epochs`` x ``num_mini_batches`` optimizer steps, each over ``gradient_accumulation_steps``
        micro-batches; returns the mean of each logged loss term over the minibatches.

        With ``target_kl`` the update stops (as SB3's PPO does) at the first minibatch whose approximate
        KL to the sampling policy exceeds 1.5 x ``target_kl``, without taking that step."""
        c, done, model, optimizer = self.config, rollout.completions, learner.model, learner.optimizer
        keep = self.keep(batch)
        rows = keep.nonzero().squeeze(1) if keep is not None else torch.arange(len(batch.score), device=run.device)
        # each minibatch in row order: the rows of a group that land in it stay neighbours and share one prompt forward
        minibatches = [minibatch.sort().values for _ in range(c.num_ppo_epochs if len(rows) else 0)
                       for minibatch in rows[torch.randperm(len(rows), generator=generator, device=run.device)]
                       .tensor_split(min(c.num_mini_batches, len(rows)))]
        sums: dict[str, list[float]] = {}
        steps = 0
        for minibatch in minibatches:
            optimizer.zero_grad()
            terms: dict[str, float] = {}
            tokens = float(batch.mask[minibatch].sum())
            for i in minibatch.tensor_split(min(c.gradient_accumulation_steps, len(minibatch))):
                with autocast(run.device, run.mixed_precision):
                    scores, values = model(rollout.prompt_ids[i], rollout.prompt_mask[i], done.ids[i], done.mask[i],
                                           c.temperature, entropy=True)
                logprobs = scores.logprobs
                entropy = scores.entropy if c.entropy_coef > 0 else scores.entropy.detach()
                mb = MiniBatch(
                    logprobs=logprobs,
                    old_logprobs=old_logprobs[i] if old_logprobs is not None else logprobs.detach(),
                    ref_logprobs=ref_logprobs[i] if ref_logprobs is not None else None,
                    advantages=advantages[i], mask=batch.mask[i], entropy=entropy,
                    values=values.float() if values is not None else None,
                    old_values=batch.values[i] if batch.values is not None else None,
                    returns=returns[i] if returns is not None else None,
                    tokens=tokens, rows=len(minibatch), max_tokens=learner.env.T)
                loss, logged = self.loss(mb)
                run.check_finite(iteration, "loss", loss)
                run.accelerator.backward(loss)
                for name, value in logged.items():
                    terms[name] = terms.get(name, 0.0) + float(value.detach())
            if c.target_kl is not None and run.any(terms[M.APPROX_KL] > 1.5 * c.target_kl):
                optimizer.zero_grad()
                break
            run.accelerator.clip_grad_norm_(model.parameters(), c.max_grad_norm)
            optimizer.step()
            steps += 1
            for name, value in terms.items():
                sums.setdefault(name, []).append(value)
        stats = {name: float(np.mean(values)) for name, values in sums.items()}
        stats[M.UPDATE_FRACTION] = steps / max(len(minibatches), 1)
        stats.setdefault(M.ENTROPY, -float(masked_mean(batch.logprobs, batch.mask)))  # sampled-token estimate
        return stats
