"""Atomic training checkpoints: model, optimizer, scheduler, RNG states, step and any extra state.

Why not just ``save_pretrained`` every N steps: a run killed mid-write must leave the previous
checkpoint intact, and resuming must restore the optimizer moments, the schedule position and the
random streams, or the resumed run is a different run. Each checkpoint is written into a temporary
directory and moved into place with ``os.replace`` as ``<root>/step-00000100``; a half-written one
is never visible under that name. Loading first checks that the checkpoint's parameter names and
shapes match the model it is loaded into, and says which parameter differs if not.

Layout of one checkpoint: ``model.safetensors`` (weights), ``training_state.pt`` (optimizer,
scheduler and torch RNG tensors; loaded with ``weights_only=True``), ``checkpoint.json`` (step,
python/numpy RNG, the model fingerprint and the caller's extra state, all JSON).
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_model, save_model

STEP_PREFIX = "step-"


@dataclass
class CheckpointState:
    """What ``load_checkpoint`` restored besides the tensors: the step, the caller's extras and where from."""

    step: int
    path: Path
    extra: dict[str, Any] = field(default_factory=dict)


def model_fingerprint(model: torch.nn.Module) -> dict[str, list[int]]:
    """Parameter name -> shape: what must agree for a checkpoint to belong to a model."""
    return {name: list(tensor.shape) for name, tensor in model.state_dict().items()}


def _rng_states() -> tuple[dict[str, Any], dict[str, Any]]:
    np_state = np.random.get_state()
    json_states = {
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
    }
    tensor_states = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensor_states["cuda"] = torch.cuda.get_rng_state_all()
    return json_states, tensor_states


def _set_rng_states(json_states: dict[str, Any], tensor_states: dict[str, Any]) -> None:
    version, state, gauss = json_states["python"]
    random.setstate((version, tuple(state), gauss))
    name, keys, *rest = json_states["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(tensor_states["torch"])
    if "cuda" in tensor_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(tensor_states["cuda"])


def list_checkpoints(root: str | Path) -> list[Path]:
    """Complete checkpoints under ``root``, oldest first (temporary directories are never listed)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.name.startswith(STEP_PREFIX) and (p / "checkpoint.json").is_file()]
    return sorted(found, key=lambda p: int(p.name[len(STEP_PREFIX) :]))


def save_checkpoint(
    root: str | Path,
    model: torch.nn.Module,
    step: int,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    extra: dict[str, Any] | None = None,
    keep_last: int = 2,
) -> Path:
    """Write ``<root>/step-<step>`` atomically and delete all but the ``keep_last`` newest checkpoints.

    ``model`` is the unwrapped module (``accelerator.unwrap_model``); ``extra`` must be JSON-serialisable.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{STEP_PREFIX}{step:08d}"
    tmp = root / f".tmp-{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_model(model, str(tmp / "model.safetensors"))
    json_rng, tensor_rng = _rng_states()
    torch.save(
        {
            "optimizer": optimizer.state_dict() if optimizer is not None else None,
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "rng": tensor_rng,
        },
        tmp / "training_state.pt",
    )
    meta = {"step": step, "extra": extra or {}, "rng": json_rng, "fingerprint": model_fingerprint(model)}
    (tmp / "checkpoint.json").write_text(json.dumps(meta))
    if final.exists():  # re-saving the same step (e.g. after a resume): the old copy goes first
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in list_checkpoints(root)[:-keep_last] if keep_last > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory itself, or the newest one under a root; clear error if there is none."""
    path = Path(path)
    if (path / "checkpoint.json").is_file():
        return path
    found = list_checkpoints(path)
    if not found:
        raise FileNotFoundError(f"no checkpoint in {path}: expected checkpoint.json or {STEP_PREFIX}* directories")
    return found[-1]


def check_fingerprint(saved: dict[str, list[int]], model: torch.nn.Module, where: Path) -> None:
    """Fail, naming the first differing parameter, if the checkpoint was written for another model."""
    current = model_fingerprint(model)
    if saved == current:
        return
    only_saved = sorted(set(saved) - set(current))
    only_model = sorted(set(current) - set(saved))
    shape_diff = [n for n in sorted(set(saved) & set(current)) if saved[n] != current[n]]
    if shape_diff:
        n = shape_diff[0]
        detail = f"parameter {n!r} has shape {saved[n]} in the checkpoint but {current[n]} in the model"
    elif only_saved:
        detail = f"the checkpoint has parameter {only_saved[0]!r} that the model lacks"
    else:
        detail = f"the model has parameter {only_model[0]!r} that the checkpoint lacks"
    raise ValueError(f"checkpoint {where} was written for a different model: {detail}")


def load_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    restore_rng: bool = True,
) -> CheckpointState:
    """Restore a checkpoint (or the newest under a root) into the given objects; returns step and extras."""
    where = resolve_checkpoint(path)
    meta = json.loads((where / "checkpoint.json").read_text())
    check_fingerprint(meta["fingerprint"], model, where)
    load_model(model, str(where / "model.safetensors"), strict=True)
    state = torch.load(where / "training_state.pt", map_location="cpu", weights_only=True)
    if optimizer is not None:
        if state["optimizer"] is None:
            raise ValueError(f"checkpoint {where} holds no optimizer state")
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state["scheduler"] is not None:
        scheduler.load_state_dict(state["scheduler"])
    if restore_rng:
        _set_rng_states(meta["rng"], state["rng"])
    return CheckpointState(step=int(meta["step"]), path=where, extra=meta["extra"])
