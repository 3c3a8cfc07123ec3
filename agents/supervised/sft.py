"""Supervised fine-tuning (instruction tuning): the start state RL fine-tunes from.

Why: RL from a random or base model wastes its budget discovering the answer format and when to
stop; SFT on reference answers gives a policy that already answers in the env's format and ends
with EOS (the envs terminate on EOS). Any local HF causal LM works; data is a built-in task's
reference answers or a dataset file (JSONL / ``save_to_disk``, in the formats ``DatasetTask``
reads: prompt/completion, Alpaca, chat ``messages`` rendered with the tokenizer's chat template).
The loss is cross-entropy on the completion tokens only, on rows encoded exactly as the envs
encode prompts (see ``agents.supervised.data``). The loop runs under ``accelerate`` so ``accelerate launch``
gives DDP/FSDP unchanged. The output directory is a ``save_pretrained`` model + tokenizer that
envs (``tokenizer=DIR``), reward-model training and PPO load, with the config, TensorBoard logs,
``metrics.jsonl`` and resumable checkpoints next to it.

Evaluation on the held-out split: token-level loss and perplexity of the references, and task
accuracy of greedy completions under the task's verifier (KV-cache sampler, batched).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from agents import metrics as M
from agents.rl.policy import label_logprobs
from agents.supervised.data import (
    SFTCollator,
    encode_sft_rows,
    env_problem,
    generate_completions,
    sample_metadata,
    save_in_memory_data,
)
from agents.supervised.training import (
    TrainingArguments,
    fit,
    make_accelerator,
    resolve_resume,
    save_final,
)
from llm_gym.commands import ENV_KWARGS_HELP, add_dataclass_command, require_env_id
from llm_gym.models import load_causal_lm
from llm_gym.tasks import Sample, Task
from llm_gym.tasks.datasets import DatasetTask, Format

SETUP_KEYS = ("model_name_or_path", "env_id", "env_kwargs", "data", "test_data", "data_format")


@dataclass(kw_only=True)
class SFTConfig(TrainingArguments):
    """Supervised fine-tuning of a causal LM on an env's reference answers or a dataset file; saved as sft_config.yaml in output_dir."""

    model_name_or_path: str = field(metadata={"help": "local HF causal-LM directory with its tokenizer to start from (e.g. from `llm-gym tiny`)", "path": "dir"})
    output_dir: str = field(metadata={"help": "run directory: the trained model (save_pretrained), config, logs, checkpoints", "path": "output"})
    env_id: str = field(default="llm_gym/Arithmetic-v0", metadata={"help": "env whose task supplies the rows (its reference answers) and the verifier; ignored with --data"})
    env_kwargs: dict[str, Any] = field(default_factory=dict, metadata={"help": ENV_KWARGS_HELP})
    data: str | None = field(default=None, metadata={"help": "JSONL file or save_to_disk directory to train on instead of the env's task (from Python: also an in-memory datasets.Dataset)", "path": "exists"})
    test_data: str | None = field(default=None, metadata={"help": "held-out file for --data (default: a stable hash split of --data)", "path": "exists"})
    data_format: Format | None = field(default=None, metadata={"help": "row format of --data (default: detected from its columns)"})
    train_size: int = field(default=20000, metadata={"help": "rows drawn from the env's task (all rows with --data)"})
    eval_size: int = field(default=200, metadata={"help": "held-out rows evaluated"})
    max_length: int = field(default=64, metadata={"help": "tokens per row (prompt + completion + EOS); longer rows are dropped and counted"})
    batch_size: int = field(default=64, metadata={"help": "rows per process per micro-batch"})
    max_steps: int = field(default=500, metadata={"help": "optimizer steps"})
    learning_rate: float = field(default=3e-3, metadata={"help": "peak learning rate (AdamW)"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay (not on biases and norms)"})
    warmup_steps: int = field(default=50, metadata={"help": "linear warm-up steps"})
    max_new_tokens: int | None = field(default=None, metadata={"help": "greedy-decoding budget at evaluation (default: the env's)"})

    def __post_init__(self) -> None:
        if self.data is None:
            require_env_id(self.env_id)


@dataclass
class SFTResult:
    """Where the model was written and the held-out metrics before and after training."""

    output_dir: Path
    initial: dict[str, float]
    final: dict[str, float]
    curve: list[dict[str, float]]


def load_sft_task(config: SFTConfig, tokenizer: PreTrainedTokenizerBase) -> tuple[Task, int]:
    """The task that supplies rows and the verifier, and its decoding budget: a dataset file when ``data``
    is set, else the task of ``gymnasium.make(env_id, **env_kwargs)``."""
    if config.data is None:
        problem = env_problem(config.env_id, config.env_kwargs, tokenizer)
        return problem.task, problem.max_new_tokens
    task = DatasetTask.from_files(config.data, config.test_data, format=config.data_format, tokenizer=tokenizer)
    return task, task.max_new_tokens


def split_samples(task: Task, split: str, size: int, seed: int) -> list[Sample]:
    """All rows of a dataset split, or ``size`` seeded draws from a procedural task."""
    if isinstance(task, DatasetTask):
        rows = task.splits[split]
        return rows if split == "train" else rows[:size]
    return task.dataset(split, size, seed)


@torch.no_grad()
def evaluate_sft(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    task: Task,
    samples: list[Sample],
    examples: list[dict[str, list[int]]],
    max_new_tokens: int,
    batch_size: int,
) -> dict[str, float]:
    """Held-out reference loss/perplexity (token-weighted) and greedy task accuracy under ``task.verify``."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    collate = SFTCollator(tokenizer.pad_token_id)
    total_nll, total_tokens = 0.0, 0
    for start in range(0, len(examples), batch_size):
        batch = {k: v.to(device) for k, v in collate(examples[start : start + batch_size]).items()}
        logprobs = label_logprobs(model, batch["input_ids"], batch["attention_mask"], batch["labels"])
        total_nll -= float(logprobs.sum())
        total_tokens += len(logprobs)
    prompts = [s.prompt for s in samples]
    completions = generate_completions(model, tokenizer, prompts, max_new_tokens, batch_size)
    correct = task.verify(prompts, completions, [sample_metadata(s) for s in samples])
    model.train(was_training)
    loss = total_nll / max(total_tokens, 1)
    return {M.EVAL_LOSS: loss, M.EVAL_PERPLEXITY: math.exp(min(loss, 50.0)), M.EVAL_ACCURACY: float(correct.mean())}


def train_sft(config: SFTConfig) -> SFTResult:
    """Run SFT as configured; returns held-out metrics before and after training."""
    out = Path(config.output_dir)
    config = save_in_memory_data(config, out, ("data", "test_data"))  # a datasets.Dataset works as `data`
    resume = resolve_resume(out, "sft", config, SETUP_KEYS)
    accelerator = make_accelerator(config.mixed_precision, config.gradient_accumulation_steps, cpu=config.cpu)
    torch.manual_seed(config.seed)
    model, tokenizer = load_causal_lm(config.model_name_or_path)
    task, task_max_new_tokens = load_sft_task(config, tokenizer)
    train_samples = split_samples(task, "train", config.train_size, config.seed)
    eval_samples = split_samples(task, "test", config.eval_size, config.seed + 1)
    train_rows, train_dropped = encode_sft_rows(
        tokenizer, [(s.prompt, s.reference) for s in train_samples], config.max_length, "the SFT training data"
    )
    eval_rows, eval_dropped = encode_sft_rows(
        tokenizer, [(s.prompt, s.reference) for s in eval_samples], config.max_length, "the SFT held-out data"
    )
    max_new_tokens = config.max_new_tokens or task_max_new_tokens
    model, optimizer, scheduler, step, batches, logger, fitted = fit(
        config, out, "sft", "sft_config.yaml", accelerator, model, train_rows, SFTCollator(tokenizer.pad_token_id),
        resume, loss_fn=lambda model, batch: -label_logprobs(model, **batch).mean(),
        evaluate_fn=lambda model: evaluate_sft(model, tokenizer, task, eval_samples, eval_rows, max_new_tokens,
                                               config.eval_batch_size),
        throughput=(M.TOKENS_PER_S, lambda batch: float((batch["labels"] != -100).sum())),
        describe=f"SFT: {len(train_rows)} train rows ({train_dropped} dropped: longer than max_length={config.max_length}), "
                 f"{len(eval_rows)} held-out rows ({eval_dropped} dropped)",
    )
    initial, final = fitted.initial, fitted.final
    save_final(out, accelerator, model, tokenizer, step, optimizer, scheduler, batches, "sft_results.json",
               {"initial": initial, "final": final, "wall_s": fitted.wall_s})
    if accelerator.is_main_process:
        logger.message(f"SFT done in {fitted.wall_s:.1f}s: {initial} -> {final}; model written to {out}")
    logger.close()
    accelerator.wait_for_everyone()
    return SFTResult(out, initial, final, fitted.curve)


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """``llm-gym sft``: the ``llm_gym.commands`` entry point."""
    add_dataclass_command(subparsers, "sft", "supervised fine-tuning (instruction tuning) of a causal LM", SFTConfig, train_sft)


if __name__ == "__main__":  # `accelerate launch -m agents.supervised.sft ...`
    import sys

    from llm_gym.cli import main

    sys.exit(main(["sft", *sys.argv[1:]]))
