"""Reward-model training from feedback: Bradley–Terry on preference pairs, or BCE on good/bad ratings.

Why: RL should optimise a reward *learned from people's judgements*, not a hand-written rule.
The model is any ``AutoModelForSequenceClassification`` with one output (initialised from a
local directory, typically the SFT policy's backbone, or built tiny from a config for the
tokenizer); it reads exactly the text ``LearnedReward`` scores (``reward_model_text``), truncated
from the left like at scoring time, so the saved directory works unchanged as
``reward="learned:path=DIR"`` in any env.

Pairwise loss: ``-log σ(r_chosen - r_rejected - margin)`` with ``margin`` = the config's margin
plus a row's own ``"margin"`` field; ``center_coef`` adds ``center_coef * mean((r_c + r_r)^2)``
(TRL's reward centering) so rewards stay near 0 and can be compared across runs. Pointwise
loss: binary cross-entropy of ``σ(r)`` against the label. Held-out rows are a stable hash split
on the prompt, so no prompt is in both; the held-out metric is pairwise accuracy (for ratings:
the fraction of (good, bad) pairs ranked correctly, i.e. the AUC).
"""

from __future__ import annotations

import argparse
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from transformers import AutoModelForSequenceClassification, PreTrainedModel, PreTrainedTokenizerBase

from agents import metrics as M
from agents.supervised.data import RewardCollator, encode_reward_text, save_in_memory_data
from agents.supervised.training import (
    TrainingArguments,
    fit,
    make_accelerator,
    resolve_resume,
    save_final,
)
from llm_gym.commands import add_dataclass_command
from llm_gym.feedback import FeedbackData, read_feedback
from llm_gym.models import TinyModelConfig, build_tiny_model, check_vocab_match, load_tokenizer

Objective = Literal["auto", "pairwise", "pointwise"]
SETUP_KEYS = ("data", "model_name_or_path", "tokenizer", "objective")


@dataclass(kw_only=True)
class RewardModelConfig(TrainingArguments):
    """Train a reward model on preference pairs or good/bad ratings; saved as reward_model_config.yaml in output_dir."""

    data: str = field(metadata={"help": "JSONL or save_to_disk directory of preference pairs or ratings (e.g. from `llm-gym feedback`); "
                                                     "from Python also an in-memory datasets.Dataset", "path": "exists"})
    output_dir: str = field(metadata={"help": "run directory: the reward model (save_pretrained), config, logs, checkpoints", "path": "output"})
    model_name_or_path: str | None = field(default=None, metadata={"help": "local HF directory to initialise the backbone from (e.g. the SFT model); default: a tiny random-init GPT-2", "path": "dir"})
    tokenizer: str | None = field(default=None, metadata={"help": "tokenizer directory (default: model_name_or_path's; required without it)", "path": "dir"})
    objective: Objective = field(default="auto", metadata={"help": "Bradley-Terry on pairs or BCE on ratings; auto: from the data"})
    margin: float = field(default=0.0, metadata={"help": "pairwise margin added to every row's own 'margin'"})
    center_coef: float = field(default=0.0, metadata={"help": "weight of the reward-centering term mean((r_chosen + r_rejected)^2)"})
    n_layer: int = field(default=2, metadata={"help": "layers of the tiny backbone (without model_name_or_path)"})
    n_embd: int = field(default=64, metadata={"help": "hidden size of the tiny backbone"})
    n_head: int = field(default=4, metadata={"help": "attention heads of the tiny backbone"})
    eval_fraction: float = field(default=0.1, metadata={"help": "fraction of prompts held out (stable hash split)"})
    max_length: int = field(default=128, metadata={"help": "tokens per text; longer texts are truncated from the left and counted"})

    def __post_init__(self) -> None:
        if self.model_name_or_path is None and self.tokenizer is None:
            raise ValueError("reward-model training needs --model_name_or_path (a local HF directory) or --tokenizer (to build a tiny model)")


@dataclass
class RewardModelResult:
    """Where the reward model was written and its held-out metrics before and after training."""

    output_dir: Path
    initial: dict[str, float]
    final: dict[str, float]
    counts: dict[str, int]


def build_reward_model(config: RewardModelConfig) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The scalar-head classifier and its tokenizer, checked to share a vocabulary."""
    tokenizer = load_tokenizer(config.tokenizer or config.model_name_or_path)
    if config.model_name_or_path is not None:
        model = AutoModelForSequenceClassification.from_pretrained(config.model_name_or_path, num_labels=1)
    else:
        size = TinyModelConfig(
            n_layer=config.n_layer, n_embd=config.n_embd, n_head=config.n_head, max_positions=max(256, config.max_length), seed=config.seed
        )
        hf_config = build_tiny_model(tokenizer, size).config
        hf_config.num_labels = 1
        torch.manual_seed(config.seed)
        model = AutoModelForSequenceClassification.from_config(hf_config)
    check_vocab_match(tokenizer, model)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def encode_feedback(
    data: FeedbackData, tokenizer: PreTrainedTokenizerBase, objective: str, max_length: int
) -> tuple[list[dict[str, Any]], int]:
    """Rows for ``RewardCollator``; returns them and the number of texts truncated from the left."""
    rows, truncated = [], 0
    if objective == "pairwise":
        for pair in data.pairs:
            chosen, cut_c = encode_reward_text(tokenizer, pair.prompt, pair.chosen, max_length)
            rejected, cut_r = encode_reward_text(tokenizer, pair.prompt, pair.rejected, max_length)
            truncated += cut_c + cut_r
            rows.append({"prompt": pair.prompt, "chosen_ids": chosen, "rejected_ids": rejected, "margin": pair.margin})
    else:
        for rating in data.ratings:
            ids, cut = encode_reward_text(tokenizer, rating.prompt, rating.completion, max_length)
            truncated += cut
            rows.append({"prompt": rating.prompt, "input_ids": ids, "label": rating.label})
    return rows, truncated


def is_held_out(prompt: str, fraction: float) -> bool:
    """Stable hash split on the prompt, salted so it is independent of the tasks' own train/test split."""
    return zlib.crc32(b"reward-model-eval:" + prompt.encode()) % 10_000 < fraction * 10_000


def resolve_objective(objective: str, data: FeedbackData, path: str) -> str:
    """``auto`` picks from the data; an explicit objective must match what the file holds."""
    if objective not in ("auto", "pairwise", "pointwise"):
        raise ValueError(f"objective must be 'auto', 'pairwise' or 'pointwise', got {objective!r}")
    found = "pairwise" if data.pairs else "pointwise" if data.ratings else None
    if found is None:
        skipped = ", ".join(f"{n} {why}" for why, n in data.skipped.items()) or "no rows"
        raise ValueError(f"feedback dataset {path} is empty: no usable preference pairs or ratings ({skipped})")
    if objective != "auto" and objective != found:
        raise ValueError(f"objective={objective!r} but {path} holds {'preference pairs' if found == 'pairwise' else 'ratings'}")
    return found


def reward_loss(
    rewards: torch.Tensor, batch: dict[str, torch.Tensor], objective: str, margin: float, center_coef: float
) -> torch.Tensor:
    """Bradley–Terry (with margin and centering) on stacked chosen/rejected rewards, or pointwise BCE."""
    if objective == "pointwise":
        return F.binary_cross_entropy_with_logits(rewards, batch["label"])
    chosen, rejected = rewards.chunk(2)
    loss = -F.logsigmoid(chosen - rejected - margin - batch["margin"]).mean()
    if center_coef:
        loss = loss + center_coef * ((chosen + rejected) ** 2).mean()
    return loss


@torch.no_grad()
def evaluate_reward_model(
    model: PreTrainedModel, rows: list[dict[str, Any]], collate: RewardCollator, objective: str, batch_size: int
) -> dict[str, float]:
    """Held-out loss, pairwise accuracy (AUC for ratings) and mean reward."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    rewards, labels, losses = [], [], []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        batch = {k: v.to(device) for k, v in collate(chunk).items()}
        r = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, 0].float()
        losses.append(reward_loss(r, batch, objective, 0.0, 0.0) * len(chunk))
        rewards.append(r.cpu())
        if objective == "pointwise":
            labels.append(batch["label"].cpu())
    model.train(was_training)
    metrics = {M.EVAL_LOSS: float(torch.stack(losses).sum() / len(rows))}
    if objective == "pairwise":
        chosen, rejected = zip(*(r.chunk(2) for r in rewards))
        chosen, rejected = torch.cat(chosen), torch.cat(rejected)
        metrics[M.EVAL_PAIRWISE_ACCURACY] = float((chosen > rejected).float().mean())
        metrics[M.EVAL_REWARD_MARGIN] = float((chosen - rejected).mean())
        metrics[M.EVAL_REWARD_MEAN] = float(torch.cat([chosen, rejected]).mean())
    else:
        r, y = torch.cat(rewards), torch.cat(labels)
        good, bad = r[y > 0.5], r[y <= 0.5]
        metrics[M.EVAL_ACCURACY] = float(((r > 0) == (y > 0.5)).float().mean())
        if len(good) and len(bad):
            metrics[M.EVAL_PAIRWISE_ACCURACY] = float((good[:, None] > bad[None, :]).float().mean())
        metrics[M.EVAL_REWARD_MEAN] = float(r.mean())
    return metrics


def train_reward_model(config: RewardModelConfig) -> RewardModelResult:
    """Train as configured; the output directory is a ``learned:path=...`` reward model."""
    out = Path(config.output_dir)
    config = save_in_memory_data(config, out, ("data",))  # a datasets.Dataset works as `data`
    resume = resolve_resume(out, "reward-model", config, SETUP_KEYS)
    accelerator = make_accelerator(config.mixed_precision, config.gradient_accumulation_steps, cpu=config.cpu)
    torch.manual_seed(config.seed)
    data = read_feedback(config.data)
    objective = resolve_objective(config.objective, data, config.data)
    model, tokenizer = build_reward_model(config)
    rows, truncated = encode_feedback(data, tokenizer, objective, config.max_length)
    held_out = [is_held_out(r["prompt"], config.eval_fraction) for r in rows]
    train_rows = [r for r, h in zip(rows, held_out) if not h]
    eval_rows = [r for r, h in zip(rows, held_out) if h]
    if not train_rows or not eval_rows:
        raise ValueError(
            f"{config.data}: the prompt hash split with eval_fraction={config.eval_fraction} left "
            f"{len(train_rows)} training and {len(eval_rows)} held-out rows; both must be non-empty (more data, "
            "or another eval_fraction)"
        )
    counts = {
        "train_rows": len(train_rows),
        "eval_rows": len(eval_rows),
        "truncated_texts": truncated,
        **{f"skipped_{why}": n for why, n in data.skipped.items()},
    }
    collate = RewardCollator(tokenizer.pad_token_id)

    def loss_fn(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        rewards = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, 0].float()
        return reward_loss(rewards, batch, objective, config.margin, config.center_coef)

    model, optimizer, scheduler, step, batches, logger, fitted = fit(
        config, out, "reward-model", "reward_model_config.yaml", accelerator, model, train_rows, collate, resume, loss_fn,
        evaluate_fn=lambda model: evaluate_reward_model(model, eval_rows, collate, objective, config.eval_batch_size),
        throughput=(M.SAMPLES_PER_S, lambda batch: float(config.batch_size)),
        describe=f"reward model ({objective}): {counts}; texts longer than max_length={config.max_length} are truncated "
                 "from the left",
    )
    initial, final = fitted.initial, fitted.final
    save_final(out, accelerator, model, tokenizer, step, optimizer, scheduler, batches, "reward_model_results.json",
               {"initial": initial, "final": final, "counts": counts, "wall_s": fitted.wall_s})
    if accelerator.is_main_process:
        logger.message(f"reward model done: {initial} -> {final}; written to {out} (use reward='learned:path={out}')")
    logger.close()
    accelerator.wait_for_everyone()
    return RewardModelResult(out, initial, final, counts)


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """``llm-gym reward-model``: the ``llm_gym.commands`` entry point."""
    add_dataclass_command(subparsers, "reward-model", "train a reward model on preference pairs or ratings",
                          RewardModelConfig, train_reward_model)


if __name__ == "__main__":  # `accelerate launch -m agents.supervised.reward_training ...`
    import sys

    from llm_gym.cli import main

    sys.exit(main(["reward-model", *sys.argv[1:]]))
