"""The fields every on-policy algorithm shares, written once; each algorithm's config extends it.

Why one base: PPO, REINFORCE, RLOO, GRPO and their variants all sample a batch of completions from
a start model, score them through the env, and take clipped policy-gradient steps over it. The
knobs for that (model, batch layout, epochs, sampling, clipping, KL penalty, checkpoints) mean the
same thing in every algorithm and are spelt as in TRL (``learning_rate``, ``num_generations``,
``epsilon``, ``kl_coef``, ``num_ppo_epochs``...), so TRL users recognise them. Every field has a
``help`` text and plain types, so ``transformers.HfArgumentParser`` turns a config into flags.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from llm_gym.models import MIXED_PRECISION_HELP, MixedPrecision

DEVICE_HELP = "auto = CUDA if available; the forwards' precision is mixed_precision's"


@dataclass
class RLConfig:
    """Shared on-policy settings; defaults are the tiny-model CPU settings."""

    model_name_or_path: str | None = field(default=None, metadata={
        "help": "HF directory of the start policy (the SFT model); also the KL reference unless "
                "ref_model_name_or_path is set"})
    ref_model_name_or_path: str | None = field(default=None, metadata={
        "help": "HF directory of the KL reference model (default: model_name_or_path)"})
    learning_rate: float = field(default=1e-4, metadata={"help": "AdamW learning rate"})
    batch_size: int = field(default=64, metadata={
        "help": "completions sampled per iteration and process (num_generations per prompt)"})
    num_generations: int = field(default=1, metadata={"help": "completions sampled per prompt (the group size)"})
    num_mini_batches: int = field(default=1, metadata={"help": "optimizer steps per pass over the batch"})
    gradient_accumulation_steps: int = field(default=1, metadata={
        "help": "micro-batches per minibatch (trades memory for time; the result is the same)"})
    local_rollout_forward_batch_size: int = field(default=64, metadata={
        "help": "rows per no-grad forward when a batch is scored before the update (behaviour and reference "
                "log-probs, values); TRL's name and default; lower it if that forward runs out of memory"})
    num_ppo_epochs: int = field(default=1, metadata={
        "help": "passes over each batch (GRPO's mu, TRL GRPO's num_iterations); 1 with one minibatch is purely on-policy"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature (log-probs use the same one)"})
    top_k: int = field(default=0, metadata={"help": "sample from the top_k tokens only (0: all)"})
    compile_sampler: bool = field(default=False, metadata={
        "help": "sample through torch.compile(model.forward, dynamic=True): 1.2-1.75x faster sampling of a small "
                "model on a CPU after a one-off compile of 15-30 s per process (needs a C++ compiler); for long runs"})
    epsilon: float = field(default=0.2, metadata={"help": "lower clip of the importance ratio, 1 - epsilon"})
    epsilon_high: float | None = field(default=None, metadata={
        "help": "upper clip 1 + epsilon_high (DAPO's clip-higher); default: epsilon"})
    kl_coef: float = field(default=0.05, metadata={"help": "KL(policy || reference) penalty subtracted from the reward"})
    kl_estimator: Literal["k1", "k3"] = field(default="k1", metadata={
        "help": "per-token KL estimator of the reward penalty: k1 = log p/q (unbiased), k3 = (r - 1) - log r (>= 0)"})
    loss_type: Literal["grpo", "dr_grpo", "dapo"] = field(default="dapo", metadata={
        "help": "how token losses are averaged (as TRL): grpo = per sequence then over sequences, "
                "dr_grpo = token sum / (rows x max tokens), dapo = token sum / real tokens of the minibatch"})
    entropy_coef: float = field(default=0.0, metadata={"help": "weight of the entropy bonus in the loss"})
    missing_eos_penalty: float = field(default=1.0, metadata={
        "help": "subtracted from the score of a completion that never emitted EOS"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping norm"})
    target_kl: float | None = field(default=None, metadata={
        "help": "stop an iteration's update at the first minibatch whose approximate KL to the sampling policy "
                "exceeds 1.5 x target_kl (SB3's PPO rule); unset: every epoch and minibatch runs"})
    lora_r: int = field(default=0, metadata={"help": "LoRA rank (0: train all weights)"})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha"})
    save_steps: int = field(default=10, metadata={"help": "checkpoint every N iterations (0: never)"})
    eval_episodes: int = field(default=128, metadata={"help": "held-out episodes of the final evaluation"})
    device: Literal["auto", "cpu", "cuda"] = field(default="auto", metadata={"help": DEVICE_HELP})
    mixed_precision: MixedPrecision = field(default="auto", metadata={"help": MIXED_PRECISION_HELP})

    @property
    def clip_high(self) -> float:
        return self.epsilon if self.epsilon_high is None else self.epsilon_high


# Fields that change neither the samples nor the weights: a run may resume with other values.
RESUMABLE_FIELDS = frozenset({"save_steps", "eval_episodes"})
