"""Supervised fine-tuning (instruction tuning): the start state RL fine-tunes from.

Why: RL from a random or base model wastes its budget discovering the answer format and when to
stop; SFT on reference answers gives a policy that already answers in the env's format and ends
with EOS (the envs terminate on EOS). Any local HF causal LM works; data is a built-in task's
reference answers or a dataset file (JSONL / ``save_to_disk``, in the formats ``DatasetTask``
reads: prompt/completion, Alpaca, chat ``messages`` rendered with the tokenizer's chat template).
The loss is cross-entropy on the completion tokens only, on rows encoded exactly as the envs
encode prompts (see ``agents.data``). The loop runs under ``accelerate`` so ``accelerate launch``
gives DDP/FSDP unchanged. The output directory is a ``save_pretrained`` model + tokenizer that
envs (``tokenizer=DIR``), reward-model training and PPO load, with the config, TensorBoard logs,
``metrics.jsonl`` and resumable checkpoints next to it.

Evaluation on the held-out split: token-level loss and perplexity of the references, and task
accuracy of greedy completions under the task's verifier (KV-cache sampler, batched).
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from agents.checkpoint import load_checkpoint
from agents.supervised.data import SFTCollator, encode_sft_rows, generate_completions, sample_metadata
from agents.run_config import add_config_args, config_from_args, save_config
from agents.supervised.training import EpochOrder, RunLogger, adamw_with_schedule, checkpoint_step, make_accelerator, save_final
from llm_gym.models import load_causal_lm
from llm_gym.tasks import Sample, Task, make_task
from llm_gym.tasks.datasets import DatasetTask


@dataclass
class SFTConfig:
    """Everything an SFT run depends on; saved as ``sft_config.yaml`` in ``output_dir``."""

    model: str  # local HF causal-LM directory with its tokenizer (e.g. from `llm-gym tiny`)
    output_dir: str
    task: str = "arithmetic"  # built-in task whose reference answers are the data (ignored with `data`)
    task_kwargs: dict[str, Any] = field(default_factory=dict)
    data: str | None = None  # JSONL file or save_to_disk directory instead of a built-in task
    test_data: str | None = None  # held-out file; default: the stable hash split of `data`
    data_format: str | None = None  # prompt_completion | alpaca | messages | preference; default: detected
    train_size: int = 20000  # rows drawn from a built-in task
    eval_size: int = 200
    max_length: int = 64  # tokens (prompt + completion + EOS); longer rows are dropped and counted
    batch_size: int = 64  # per process, per micro-batch
    grad_accum: int = 1
    max_steps: int = 500  # optimizer steps
    lr: float = 3e-3
    weight_decay: float = 0.01
    warmup_steps: int = 50
    schedule: str = "cosine"  # cosine | linear | constant (after warmup)
    max_grad_norm: float = 1.0
    mixed_precision: str = "auto"  # auto (bf16/fp16 on CUDA, none on CPU) | no | bf16 | fp16
    cpu: bool = False  # force CPU even when a GPU is present
    eval_every: int = 100  # steps; 0 = evaluate only before and after training
    eval_batch_size: int = 256
    max_new_tokens: int | None = None  # greedy-decoding budget at evaluation; default: the task's
    log_every: int = 10
    save_every: int = 0  # checkpoint every N steps (0: only at the end of training)
    resume: str | None = None  # checkpoint dir, or "auto" for the newest under output_dir/checkpoints
    seed: int = 0


@dataclass
class SFTResult:
    """Where the model was written and the held-out metrics before and after training."""

    output_dir: Path
    initial: dict[str, float]
    final: dict[str, float]
    curve: list[dict[str, float]]


def load_sft_task(config: SFTConfig, tokenizer: PreTrainedTokenizerBase) -> Task:
    """The task that supplies rows and the verifier: a dataset file when ``data`` is set, else a built-in task."""
    if config.data is None:
        return make_task(config.task, **config.task_kwargs)
    return DatasetTask.from_files(config.data, config.test_data, format=config.data_format, tokenizer=tokenizer)


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
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
        labels = batch["labels"][:, 1:]
        total_nll += F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=-100, reduction="sum").item()
        total_tokens += int((labels != -100).sum())
    prompts = [s.prompt for s in samples]
    completions = generate_completions(model, tokenizer, prompts, max_new_tokens, batch_size)
    correct = task.verify(prompts, completions, [sample_metadata(s) for s in samples])
    model.train(was_training)
    loss = total_nll / max(total_tokens, 1)
    return {"eval/loss": loss, "eval/perplexity": math.exp(min(loss, 50.0)), "eval/accuracy": float(correct.mean())}


def train_sft(config: SFTConfig) -> SFTResult:
    """Run SFT as configured; returns held-out metrics before and after training."""
    out = Path(config.output_dir)
    accelerator = make_accelerator(config.mixed_precision, config.grad_accum, cpu=config.cpu)
    torch.manual_seed(config.seed)
    model, tokenizer = load_causal_lm(config.model)
    task = load_sft_task(config, tokenizer)
    train_samples = split_samples(task, "train", config.train_size, config.seed)
    eval_samples = split_samples(task, "test", config.eval_size, config.seed + 1)
    train_rows, train_dropped = encode_sft_rows(
        tokenizer, [(s.prompt, s.reference) for s in train_samples], config.max_length, "the SFT training data"
    )
    eval_rows, eval_dropped = encode_sft_rows(
        tokenizer, [(s.prompt, s.reference) for s in eval_samples], config.max_length, "the SFT held-out data"
    )
    max_new_tokens = config.max_new_tokens or task.max_new_tokens
    optimizer, scheduler = adamw_with_schedule(
        model, config.lr, config.weight_decay, config.warmup_steps, config.max_steps, config.schedule
    )
    step, micro_step = 0, 0
    if config.resume:
        where = out / "checkpoints" if config.resume == "auto" else Path(config.resume)
        if config.resume != "auto" or where.is_dir():
            state = load_checkpoint(where, model, optimizer, scheduler)
            step, micro_step = state.step, int(state.extra["micro_step"])
    model, optimizer = accelerator.prepare(model, optimizer)
    batches = EpochOrder(train_rows, config.batch_size, SFTCollator(tokenizer.pad_token_id), config.seed, accelerator, micro_step)

    main = accelerator.is_main_process
    if main:
        save_config(config, out, "sft_config.yaml")
    logger = RunLogger(out, config.max_steps, step, main, "sft")
    logger.message(
        f"SFT: {len(train_rows)} train rows ({train_dropped} dropped: longer than max_length={config.max_length}), "
        f"{len(eval_rows)} held-out rows ({eval_dropped} dropped); {accelerator.num_processes} process(es) on {accelerator.device}"
    )

    def evaluate() -> dict[str, float]:
        metrics = {}
        if main:
            metrics = evaluate_sft(
                accelerator.unwrap_model(model), tokenizer, task, eval_samples, eval_rows, max_new_tokens, config.eval_batch_size
            )
            logger.log(step, metrics)
        accelerator.wait_for_everyone()
        return metrics

    initial = evaluate()
    curve: list[dict[str, float]] = [{"step": step, **initial}]
    model.train()
    started, tokens, window_loss, window_n = time.perf_counter(), 0, torch.zeros((), device=accelerator.device), 0
    iterator = iter(batches)
    while step < config.max_steps:
        batch = next(iterator)
        with accelerator.accumulate(model):
            loss = model(**batch).loss
            accelerator.backward(loss)
            if accelerator.sync_gradients and config.max_grad_norm > 0:
                accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        window_loss += loss.detach()
        window_n += 1
        tokens += int((batch["labels"] != -100).sum())
        if not accelerator.sync_gradients:
            continue
        scheduler.step()
        step += 1
        logger.advance()
        if step % config.log_every == 0 or step == config.max_steps:
            mean_loss = accelerator.reduce(window_loss / window_n, "mean").item()
            elapsed = time.perf_counter() - started
            logger.log(step, {"loss/train": mean_loss, "lr": scheduler.get_last_lr()[0], "perf/tokens_per_s": tokens / elapsed})
            window_loss.zero_()
            window_n = 0
        if config.eval_every and step % config.eval_every == 0 and step < config.max_steps:
            curve.append({"step": step, **evaluate()})
        if config.save_every and step % config.save_every == 0 and step < config.max_steps:
            checkpoint_step(out, accelerator, model, step, optimizer, scheduler, batches)

    final = evaluate()
    curve.append({"step": step, **final})
    save_final(out, accelerator, model, tokenizer, step, optimizer, scheduler, batches, "sft_results.json",
               {"initial": initial, "final": final, "wall_s": time.perf_counter() - started})
    if main:
        logger.message(f"SFT done in {time.perf_counter() - started:.1f}s: {initial} -> {final}; model written to {out}")
    logger.close()
    accelerator.wait_for_everyone()
    return SFTResult(out, initial, final, curve)


def run(args: argparse.Namespace) -> int:
    train_sft(config_from_args(SFTConfig, args))
    return 0


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """``llm-gym sft``: the ``llm_gym.commands`` entry point."""
    parser = subparsers.add_parser("sft", help="supervised fine-tuning (instruction tuning) of a causal LM")
    add_config_args(parser, SFTConfig)
    parser.set_defaults(func=run)


if __name__ == "__main__":
    import sys

    cli = argparse.ArgumentParser(prog="python -m agents.sft")
    add_config_args(cli, SFTConfig)
    sys.exit(run(cli.parse_args()))
