"""Pieces shared by the supervised training loops (SFT and reward model): accelerator, optimiser, logs, data order.

Why shared: both loops are "minimise a loss over a fixed dataset with AdamW under accelerate" and
must resume to the same batch order and schedule position. Keeping the accelerator setup, the
optimiser/schedule, the epoch-seeded data order and the TensorBoard/JSONL logger here lets each
trainer file read as its loss and its evaluation only.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm
from transformers import get_scheduler

from agents import metrics as M
from agents.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from agents.run_config import save_config
from agents.run_record import check_resumable, write_run_record
from llm_gym.commands import RESUME_HELP
from llm_gym.models import MIXED_PRECISION_HELP, MixedPrecision, resolve_mixed_precision

Schedule = Literal["cosine", "linear", "constant"]


@dataclass(kw_only=True)
class TrainingArguments:
    """The optimisation settings SFT and reward-model training share, spelt as in ``transformers``/TRL
    (``learning_rate``, ``gradient_accumulation_steps``, ``save_steps``); each trainer's config extends it
    and overrides the defaults that suit it."""

    batch_size: int = field(default=32, metadata={"help": "rows per process per micro-batch"})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "micro-batches per optimizer step"})
    max_steps: int = field(default=300, metadata={"help": "optimizer steps"})
    learning_rate: float = field(default=1e-3, metadata={"help": "peak learning rate (AdamW)"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay (not on biases and norms)"})
    warmup_steps: int = field(default=20, metadata={"help": "linear warm-up steps"})
    schedule: Schedule = field(default="cosine", metadata={"help": "learning-rate decay after warm-up"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient-norm clip (0: off)"})
    mixed_precision: MixedPrecision = field(default="auto", metadata={"help": MIXED_PRECISION_HELP})
    cpu: bool = field(default=False, metadata={"help": "train on the CPU even when a GPU is present"})
    eval_every: int = field(default=100, metadata={"help": "steps between evaluations (0: only before and after training)"})
    eval_batch_size: int = field(default=256, metadata={"help": "rows per evaluation batch"})
    log_every: int = field(default=10, metadata={"help": "steps between logged training metrics"})
    save_steps: int = field(default=0, metadata={"help": "steps between checkpoints (0: only at the end)"})
    resume_from_checkpoint: str | None = field(default=None, metadata={"help": RESUME_HELP})
    seed: int = field(default=0, metadata={"help": "seed of the data draw, the data order and the initialisation"})


def resolve_resume(out: Path, command: str, config: Any, setup_keys: Sequence[str]) -> Path | None:
    """The checkpoint ``config.resume_from_checkpoint`` names (``"auto"``: the newest in ``out``, if any), checked first.

    Runs before any model loads: a named checkpoint must exist, and resuming into ``out`` is refused
    (``RunMismatch``) when its run record has another setup (``setup_keys`` of the config).
    """
    given = config.resume_from_checkpoint
    if given is None:
        return None
    if given == "auto":
        found = list_checkpoints(out / "checkpoints")
        if not found:
            return None
        where = found[-1]
    else:
        where = Path(given)
        if not where.exists():
            raise FileNotFoundError(f"resume_from_checkpoint: checkpoint not found: {given}")
    check_resumable(out, command, config, keys=setup_keys)
    return where


def make_accelerator(mixed_precision: str, grad_accum: int, cpu: bool = False) -> Accelerator:
    """An ``Accelerator`` whose precision is ``resolve_mixed_precision`` on the device it will train on."""
    device = "cpu" if cpu or not torch.cuda.is_available() else "cuda"
    return Accelerator(mixed_precision=resolve_mixed_precision(mixed_precision, device),
                       gradient_accumulation_steps=grad_accum, cpu=cpu)


def adamw_with_schedule(
    model: torch.nn.Module, lr: float, weight_decay: float, warmup_steps: int, total_steps: int, schedule: str
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW (no decay on biases and norms) with linear warmup then ``schedule`` decay ("cosine", "linear", "constant")."""
    if schedule not in ("cosine", "linear", "constant"):
        raise ValueError(f"schedule must be 'cosine', 'linear' or 'constant', got {schedule!r}")
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=lr
    )
    name = "constant_with_warmup" if schedule == "constant" else schedule
    scheduler = get_scheduler(name, optimizer, num_warmup_steps=warmup_steps, num_training_steps=total_steps)
    return optimizer, scheduler


@dataclass
class EpochOrder:
    """Seeded, resumable batch order: epoch ``e`` shuffles with seed ``seed + e``, sharded by accelerate.

    Why not a plain shuffling DataLoader: after a resume the run must see the same batches it would
    have seen, so the order is a function of (seed, epoch) and the position is a micro-batch count.
    """

    dataset: Sequence[Any]
    batch_size: int
    collate: Callable[[list[Any]], dict[str, torch.Tensor]]
    seed: int
    accelerator: Accelerator
    micro_step: int = 0  # micro-batches consumed so far (per process)
    batches_per_epoch: int = field(init=False)

    def __post_init__(self) -> None:
        per_step = self.batch_size * self.accelerator.num_processes
        self.batches_per_epoch = max(1, math.ceil(len(self.dataset) / per_step))

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        while True:
            epoch, skip = divmod(self.micro_step, self.batches_per_epoch)
            order = torch.randperm(len(self.dataset), generator=torch.Generator().manual_seed(self.seed + epoch)).tolist()
            loader = DataLoader([self.dataset[i] for i in order], batch_size=self.batch_size, collate_fn=self.collate)
            loader = self.accelerator.prepare_data_loader(loader)
            if skip:
                loader = self.accelerator.skip_first_batches(loader, skip)
            for batch in loader:
                self.micro_step += 1
                yield batch


class RunLogger:
    """Metrics to TensorBoard (``<out>/tb``), ``<out>/metrics.jsonl`` and a tqdm bar, on the main process only."""

    def __init__(self, out_dir: Path, total_steps: int, initial_step: int, enabled: bool, desc: str):
        self.enabled = enabled
        self.writer = SummaryWriter(str(out_dir / "tb")) if enabled else None
        # A resumed run continues its metrics file; a fresh run in the same folder starts a new one.
        self.jsonl = (out_dir / "metrics.jsonl").open("a" if initial_step else "w") if enabled else None
        self.bar = tqdm(total=total_steps, initial=initial_step, desc=desc, disable=not enabled, dynamic_ncols=True)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        for name, value in metrics.items():
            self.writer.add_scalar(name, value, step)
        self.jsonl.write(json.dumps({"step": step, **metrics}) + "\n")
        self.jsonl.flush()
        shown = {k.split("/")[-1]: f"{v:.4g}" for k, v in metrics.items() if not k.startswith("perf/")}
        self.bar.set_postfix(shown, refresh=False)

    def advance(self) -> None:
        self.bar.update(1)

    def message(self, text: str) -> None:
        if self.enabled:
            tqdm.write(text)

    def close(self) -> None:
        self.bar.close()
        if self.enabled:
            self.writer.close()
            self.jsonl.close()


def checkpoint_step(out: Path, accelerator: Accelerator, model: torch.nn.Module, step: int,
                    optimizer: torch.optim.Optimizer, scheduler: Any, data_order: EpochOrder) -> None:
    """Atomic resumable checkpoint of a supervised run (main process writes, every process waits)."""
    if accelerator.is_main_process:
        save_checkpoint(out / "checkpoints", accelerator.unwrap_model(model), step, optimizer, scheduler,
                        {"micro_step": data_order.micro_step})
    accelerator.wait_for_everyone()


def save_final(out: Path, accelerator: Accelerator, model: torch.nn.Module, tokenizer: Any, step: int,
               optimizer: torch.optim.Optimizer, scheduler: Any, data_order: EpochOrder,
               results_file: str, results: dict[str, Any]) -> None:
    """Last checkpoint, the ``save_pretrained`` directory, then ``results_file`` written last (it marks the run done)."""
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        save_checkpoint(out / "checkpoints", unwrapped, step, optimizer, scheduler, {"micro_step": data_order.micro_step})
        unwrapped.save_pretrained(out)
        tokenizer.save_pretrained(out)
        (out / results_file).write_text(json.dumps(results, indent=2))


@dataclass
class FitResult:
    """Held-out metrics before and after training, the evaluations in between, and the wall time."""

    initial: dict[str, float]
    final: dict[str, float]
    curve: list[dict[str, float]]
    wall_s: float


def fit(
    config: TrainingArguments, out: Path, command: str, config_file: str, accelerator: Accelerator,
    model: torch.nn.Module, train_rows: Sequence[Any], collate: Callable[[list[Any]], dict[str, torch.Tensor]],
    resume: Path | None, loss_fn: Callable[[torch.nn.Module, dict[str, torch.Tensor]], torch.Tensor],
    evaluate_fn: Callable[[torch.nn.Module], dict[str, float]],
    throughput: tuple[str, Callable[[dict[str, torch.Tensor]], float]], describe: str,
) -> tuple[torch.nn.Module, torch.optim.Optimizer, Any, int, EpochOrder, RunLogger, FitResult]:
    """The loop SFT and reward-model training share: AdamW with warm-up and decay, resume from
    ``resume``, gradient accumulation and clipping, logged training loss and ``throughput`` (a metric
    name and the units one micro-batch counts, summed over processes), held-out ``evaluate_fn`` every
    ``eval_every`` steps and atomic checkpoints every ``save_steps``. Each trainer supplies its loss and
    evaluation; ``describe`` is the opening log line. Returns what the trainer needs to save the run."""
    optimizer, scheduler = adamw_with_schedule(
        model, config.learning_rate, config.weight_decay, config.warmup_steps, config.max_steps, config.schedule
    )
    step, micro_step = 0, 0
    if resume is not None:
        state = load_checkpoint(resume, model, optimizer, scheduler)
        step, micro_step = state.step, int(state.extra["micro_step"])
    model, optimizer = accelerator.prepare(model, optimizer)
    batches = EpochOrder(train_rows, config.batch_size, collate, config.seed, accelerator, micro_step)
    main = accelerator.is_main_process
    if main:
        save_config(config, out, config_file)
        write_run_record(out, command, config)
    logger = RunLogger(out, config.max_steps, step, main, command)
    logger.message(f"{describe}; {accelerator.num_processes} process(es) on {accelerator.device}")

    def evaluate() -> dict[str, float]:
        metrics = {}
        if main:
            metrics = evaluate_fn(accelerator.unwrap_model(model))
            logger.log(step, metrics)
        accelerator.wait_for_everyone()
        return metrics

    initial = evaluate()
    curve: list[dict[str, float]] = [{"step": step, **initial}]
    model.train()
    rate_name, units_of = throughput
    started, units, window_loss, window_n = time.perf_counter(), 0.0, torch.zeros((), device=accelerator.device), 0
    iterator = iter(batches)
    while step < config.max_steps:
        batch = next(iterator)
        with accelerator.accumulate(model):
            loss = loss_fn(model, batch)
            accelerator.backward(loss)
            if accelerator.sync_gradients and config.max_grad_norm > 0:
                accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        window_loss += loss.detach()
        window_n += 1
        units += units_of(batch) * accelerator.num_processes
        if not accelerator.sync_gradients:
            continue
        scheduler.step()
        step += 1
        logger.advance()
        if step % config.log_every == 0 or step == config.max_steps:
            mean_loss = accelerator.reduce(window_loss / window_n, "mean").item()
            rate = units / (time.perf_counter() - started)
            logger.log(step, {M.TRAIN_LOSS: mean_loss, "lr": scheduler.get_last_lr()[0], rate_name: rate})
            window_loss.zero_()
            window_n = 0
        if config.eval_every and step % config.eval_every == 0 and step < config.max_steps:
            curve.append({"step": step, **evaluate()})
        if config.save_steps and step % config.save_steps == 0 and step < config.max_steps:
            checkpoint_step(out, accelerator, model, step, optimizer, scheduler, batches)
    final = evaluate()
    curve.append({"step": step, **final})
    return model, optimizer, scheduler, step, batches, logger, FitResult(initial, final, curve, time.perf_counter() - started)
