"""The bookkeeping of one training run: accelerate, budget, logging, checkpoints, resume.

Why a separate module: an algorithm file should read as the algorithm and the on-policy loop as the
loop. Everything a run needs to behave like real training — processes under ``accelerate``, the
budget in samples, TensorBoard and JSONL logs with the metric names of ``agents.metrics``, atomic
checkpoints every N iterations (through ``agents.checkpoint``), refusing to resume from a
checkpoint of another setup (algorithm, config, env, model), and stopping with the iteration and
cause on a non-finite loss or reward while keeping the last good checkpoint — is the same for every
learner, and lives here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.tensorboard import SummaryWriter
from transformers import PreTrainedTokenizerBase

from agents.rl.algorithm import TrainResult
from agents.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from agents.rl.policy import ActorCritic, Reference, ValueModel, export_policy, load_actor_critic
from agents.rl.rollout import RolloutEnv
from agents.run_config import save_config
from agents.run_record import check_resumable, local_model_path, write_run_record
from llm_gym.models import resolve_device, resolve_mixed_precision

logger = logging.getLogger(__name__)

RL_COMMAND = "rl"  # the run record's command of every RL run (the algorithm is recorded as ``algo``)


class TrainingDiverged(RuntimeError):
    """A loss or reward became NaN/inf; the message names the iteration, the cause and the last good checkpoint."""


def _code_digest(code: types.CodeType) -> str:
    """A digest of a function's bytecode and constants (nested functions' too), the same in every process."""
    consts = [_code_digest(c) if isinstance(c, types.CodeType) else repr(c) for c in code.co_consts]
    return hashlib.sha256(code.co_code + repr(consts).encode()).hexdigest()[:12]


def _plain(value: Any) -> Any:
    """A JSON value for comparing setups: an in-memory ``datasets.Dataset`` by its fingerprint (which follows its
    content), a function by its qualified name and a digest of its code, other callables by name, paths as strings;
    so a run resumed with other rows or another reward function of the same name is refused."""
    if hasattr(value, "_fingerprint"):
        return f"{type(value).__name__}(fingerprint={value._fingerprint}, rows={len(value)})"
    if callable(value):
        name = f"{getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', type(value).__name__)}"
        code = getattr(value, "__code__", None)
        return name if code is None else f"{name}@{_code_digest(code)}"
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def setup_of(algo: str, config: Any, env_id: str, env_kwargs: dict[str, Any] | None, seed: int,
             ignore: frozenset[str] = frozenset()) -> dict[str, Any]:
    """What a checkpoint must share with a run to be resumed by it: the algorithm, every config field
    that changes samples or weights (model paths made absolute), the env id and kwargs, and the seed."""
    fields = {f.name: local_model_path(f.name, getattr(config, f.name)) for f in dataclasses.fields(config)
              if f.name not in ignore}
    return {"algo": algo, "env_id": env_id, "env_kwargs": _plain(env_kwargs or {}), "seed": seed, **_plain(fields)}


class Run:
    """One training run in ``out_dir``: ``config.yaml``, ``run_record.json``, ``metrics.jsonl``, ``tb/``, ``checkpoints/``.

    ``compat`` lists the values a checkpoint must share to be resumed (see ``setup_of``); a run
    restarted in the same folder resumes from its newest checkpoint. The run record (``agents.run_record``:
    the setup with absolute paths, versions, git commit) is checked first, so a folder that holds a run
    of another setup is refused even before it has a checkpoint.
    """

    def __init__(self, algo: str, config: Any, out_dir: str | Path, budget: int, samples_per_process: int,
                 compat: dict[str, Any]):
        self.compat = {"algo": algo, **compat}
        # every process, before accelerate fixes its process-wide precision: all refuse together, by name
        check_resumable(out_dir, RL_COMMAND, config, self.compat)
        # cpu=True without CUDA: accelerate then joins a torchrun/launch process group over gloo (MULTI_CPU).
        # Its mixed precision autocasts the prepared model's forward and, for fp16, scales the loss in
        # ``accelerator.backward``; ``self.mixed_precision`` is what ``policy.autocast`` takes elsewhere.
        device = resolve_device(config.device)
        self.mixed_precision = resolve_mixed_precision(config.mixed_precision, device)
        self.accelerator = Accelerator(cpu=device.type == "cpu", mixed_precision=self.mixed_precision)
        self.algo, self.config, self.out_dir = algo, config, Path(out_dir)
        self.rank, self.world = self.accelerator.process_index, self.accelerator.num_processes
        self.device = self.accelerator.device
        self.samples_per_iteration = samples_per_process * self.world
        if budget < self.samples_per_iteration:
            raise ValueError(
                f"budget of {budget} samples is smaller than one batch of {self.samples_per_iteration} samples "
                f"({samples_per_process} per process x {self.world} processes); raise the budget or lower batch_size"
            )
        self.iterations = budget // self.samples_per_iteration
        if budget % self.samples_per_iteration and self.accelerator.is_main_process:
            logger.warning("budget of %d samples is not a whole number of batches of %d: the run trains %d samples",
                           budget, self.samples_per_iteration, self.iterations * self.samples_per_iteration)
        self.checkpoint_root = self.out_dir / "checkpoints"
        self.metrics_path = self.out_dir / "metrics.jsonl"
        self.curve: list[dict[str, float]] = []
        self.budget = budget
        self.writer: SummaryWriter | None = None

    def record_setup(self) -> None:
        """Write ``config.yaml`` and ``run_record.json`` and open the TensorBoard log: once the models and the env
        have loaded, so a run that fails to start (a wrong path, a missing package) leaves no record that would
        refuse the corrected command."""
        if self.accelerator.is_main_process:
            save_config(self.config, self.out_dir)
            write_run_record(self.out_dir, RL_COMMAND, self.config, {**self.compat, "budget": self.budget})
            self.writer = SummaryWriter(str(self.out_dir / "tb"))

    # ------------------------------------------------------------------------------ checkpoints
    def last_checkpoint(self) -> Path | None:
        found = list_checkpoints(self.checkpoint_root)
        return found[-1] if found else None

    def resume(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, state: dict[str, Any]) -> int:
        """Load the newest checkpoint (if any) into ``model``/``optimizer``; returns the iteration to start at.

        ``state`` maps names to objects with ``load_state_dict`` (the KL controller...).
        """
        path = self.last_checkpoint()
        if path is None:
            self.reset_log()
            return 0
        meta = json.loads((path / "checkpoint.json").read_text())["extra"]
        saved = meta["compat"]
        for key in [*self.compat, *(k for k in saved if k not in self.compat)]:
            if saved.get(key) != self.compat.get(key):
                raise ValueError(
                    f"cannot resume from incompatible checkpoint {path}: {key} was {saved.get(key)!r} "
                    f"there but is {self.compat.get(key)!r} now; use a new output_dir or the original setup"
                )
        try:
            loaded = load_checkpoint(path, self.accelerator.unwrap_model(model), optimizer)
        except ValueError as err:
            raise ValueError(f"cannot resume from incompatible checkpoint {path}: {err}") from err
        for name, obj in state.items():
            obj.load_state_dict(meta["state"][name])
        self.curve = meta["curve"]
        if self.accelerator.is_main_process:  # the log restarts where the checkpoint was taken
            self._write_lines(self.curve)
        return loaded.step

    def save(self, iteration: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
             state: dict[str, Any], force: bool = False) -> None:
        """Checkpoint every ``save_steps`` iterations and at the last one (or now, with ``force``)."""
        every = self.config.save_steps
        if not (force or (every > 0 and (iteration % every == 0 or iteration == self.iterations))):
            return
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            extra = {"compat": self.compat, "curve": self.curve,
                     "state": {name: obj.state_dict() for name, obj in state.items()}}
            save_checkpoint(self.checkpoint_root, self.accelerator.unwrap_model(model), iteration, optimizer, extra=extra)
        self.accelerator.wait_for_everyone()

    # ------------------------------------------------------------------------------- bad values
    def check_finite(self, iteration: int, name: str, value: torch.Tensor) -> None:
        if not bool(torch.isfinite(value).all()):
            raise TrainingDiverged(
                f"iteration {iteration}: {name} is {value.flatten()[~torch.isfinite(value.flatten())][0].item()} "
                f"(non-finite); stopped before updating. {self._last_good()}"
            )

    def reward_failed(self, iteration: int, err: Exception) -> TrainingDiverged:
        return TrainingDiverged(f"iteration {iteration}: the env's reward failed: {err}. {self._last_good()}")

    def _last_good(self) -> str:
        path = self.last_checkpoint()
        return f"last good checkpoint: {path}" if path else "no checkpoint was written yet"

    # ---------------------------------------------------------------------------------- logging
    def mean(self, value: torch.Tensor) -> float:
        """The mean of ``value`` over this batch and all processes (what every process must agree on:
        the KL fed to β, REINFORCE's baseline)."""
        local = value.detach().float().mean()
        return float(self.accelerator.reduce(local, "mean") if self.world > 1 else local)

    def any(self, flag: bool) -> bool:
        """True on every process when ``flag`` is True on any (a callback's stop must stop them all)."""
        if self.world == 1:
            return flag
        return bool(self.accelerator.reduce(torch.tensor([float(flag)], device=self.device), "sum") > 0)

    def log(self, iteration: int, metrics: dict[str, float]) -> dict[str, float]:
        """Average ``metrics`` over processes, then write one JSONL line and TensorBoard scalars."""
        names = sorted(metrics)
        values = torch.tensor([float(metrics[n]) for n in names], dtype=torch.float64, device=self.device)
        values = self.accelerator.reduce(values, "mean") if self.world > 1 else values
        row = {"step": iteration * self.samples_per_iteration, "iteration": iteration,
               **{n: float(v) for n, v in zip(names, values.tolist())}}
        self.curve.append(row)
        if self.accelerator.is_main_process:
            self._write_lines([row], append=True)
            for name, value in row.items():
                if name not in ("step", "iteration"):
                    self.writer.add_scalar(name, value, row["step"])
            self.writer.flush()
        return row

    def reset_log(self) -> None:
        """A fresh run starts a fresh ``metrics.jsonl``."""
        if self.accelerator.is_main_process:
            self._write_lines([])

    def _write_lines(self, rows: list[dict[str, float]], append: bool = False) -> None:
        text = "".join(json.dumps(row) + "\n" for row in rows)
        if append:
            with self.metrics_path.open("a") as f:
                f.write(text)
            return
        tmp = self.metrics_path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.metrics_path)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.accelerator.wait_for_everyone()


class Timer:
    """Wall-clock seconds of a block (for the perf/* metrics)."""

    def __enter__(self) -> "Timer":
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start


def iteration_generator(device: torch.device, seed: int, iteration: int, rank: int) -> torch.Generator:
    """The random stream of one iteration on one process: a function of (seed, iteration, rank) only,
    so a resumed run draws exactly the samples and minibatches the uninterrupted run drew."""
    return torch.Generator(device).manual_seed(seed * 1_000_003 + iteration * 8_191 + rank * 131_071)


@dataclass
class Learner:
    """What a trainer optimises and samples with: ``model`` is the accelerate-prepared ``policy``."""

    model: torch.nn.Module
    policy: ActorCritic
    tokenizer: PreTrainedTokenizerBase
    reference: Reference | None  # None when no loss or reward term uses the KL
    env: RolloutEnv
    optimizer: torch.optim.Optimizer


def build_learner(run: Run, config: Any, env_id: str, env_kwargs: dict[str, Any] | None, num_envs: int,
                  value_model: ValueModel, seed: int, needs_reference: bool = True) -> Learner:
    """Load the policy (and its reference) from ``config.model_name_or_path``, make the env, prepare for accelerate.

    Needs the ``RLConfig`` model and LoRA fields on ``config``. ``seed`` fixes
    the freshly initialised parts (value head, LoRA) so two runs with one seed start identical.
    """
    if not config.model_name_or_path:
        raise ValueError(f"{run.algo}: model_name_or_path is not set; give the start policy (an HF model directory)")
    set_seed(seed)
    policy, tokenizer = load_actor_critic(config.model_name_or_path, run.device, value_model, config.lora_r, config.lora_alpha)
    reference = (Reference(policy, config.ref_model_name_or_path or config.model_name_or_path, run.device, tokenizer)
                 if needs_reference else None)
    env = RolloutEnv(env_id, num_envs, run.device, tokenizer, config.model_name_or_path, env_kwargs)
    # the fused kernel updates every tensor in one pass: 3x faster steps than the per-tensor loop on CPU, where
    # PPO takes 16 small steps per batch
    optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=config.learning_rate, eps=1e-5,
                                  fused=run.device.type in ("cpu", "cuda"))
    model, optimizer = run.accelerator.prepare(policy, optimizer)
    run.record_setup()
    return Learner(model, policy, tokenizer, reference, env, optimizer)


def finish(run: Run, learner: Learner, config: Any, env_id: str, seed: int, env_kwargs: dict[str, Any] | None,
           evaluate: Callable[..., dict[str, float]]) -> TrainResult:
    """Export the trained policy to ``out_dir/policy`` and evaluate it (main process) into a ``TrainResult``."""
    policy_dir = run.out_dir / "policy"
    final: dict[str, float] = {}
    learner.env.close()
    if run.accelerator.is_main_process:
        export_policy(learner.policy, learner.tokenizer, policy_dir, config.ref_model_name_or_path or config.model_name_or_path)
        final = evaluate(policy_dir, env_id, config.eval_episodes, seed, env_kwargs)
        (run.out_dir / "final.json").write_text(json.dumps(final, indent=1))
    run.close()
    return TrainResult(checkpoint_dir=policy_dir, curve=run.curve, final=final)
