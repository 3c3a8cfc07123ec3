"""Test helpers for the RL trainers: a short, self-contained SFT that makes a start policy.

Why here and not ``agents.supervised.sft``: the trainers' tests need an SFT start state that is cheap and
fully deterministic on CPU; a few dozen lines of teacher-forced training on ``task.dataset``
references is enough and keeps these tests independent of the SFT module's options.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from transformers.pytorch_utils import Conv1D

from llm_gym.models import TinyModelConfig, load_causal_lm, save_tiny
from llm_gym.registration import env_id
from llm_gym.tasks import make_task


def quick_sft(out_dir: Path, task_name: str = "arithmetic", steps: int = 200, batch: int = 64, lr: float = 3e-3,
              config: TinyModelConfig | None = None, task_kwargs: dict | None = None, seed: int = 0) -> Path:
    """Build a tiny model for ``task_name`` and teacher-force it on ``prompt + reference + EOS`` for ``steps``."""
    torch.manual_seed(seed)
    task = make_task(task_name, **(task_kwargs or {}))
    texts = [s.prompt + s.reference for s in task.dataset("train", 2000, seed=0) + task.dataset("test", 200, seed=0)]
    base = save_tiny(out_dir / "init", texts, "char", config or TinyModelConfig(n_layer=2, n_embd=64, n_head=4))
    model, tok = load_causal_lm(base)
    tok.padding_side = "right"
    data = task.dataset("train", steps * batch, seed=seed + 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for step in range(steps):
        chunk = data[step * batch : (step + 1) * batch]
        prompts = tok([s.prompt for s in chunk])["input_ids"]
        full = tok([s.prompt + s.reference + tok.eos_token for s in chunk], return_tensors="pt", padding=True)
        labels = full["input_ids"].masked_fill(full["attention_mask"] == 0, -100)
        for row, prompt in enumerate(prompts):
            labels[row, : len(prompt)] = -100  # learn the completion only
        loss = model(**full, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    out = out_dir / "sft"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def sft_dir(tmp_path_factory) -> Path:
    """A 2-layer 64-wide GPT-2 after 80 SFT steps of 32 on 2-digit addition (~2% exact match, but it answers
    in the task's format and ends with EOS): cheap start policy for the trainers' mechanics tests.
    Built once per session (cached on disk under the session's base temp dir)."""
    root = tmp_path_factory.getbasetemp() / "rl_sft_80"
    if not (root / "sft" / "config.json").is_file():
        quick_sft(root, steps=80, batch=32)
    return root / "sft"


def sft_and_learned_reward(root: Path, task_name: str = "arithmetic", sft_steps: int = 500, rm_steps: int = 300,
                           feedback_prompts: int = 1024, seed: int = 0) -> tuple[Path, Path]:
    """The RLHF start state, built with the project's own pipeline: ``agents.supervised.sft`` on arithmetic
    references (undertrained on purpose, ~35% exact match), simulated pairwise feedback on its own
    samples labelled by the verifier (``agents.feedback.collect``), and a Bradley-Terry reward model on the
    SFT backbone (``agents.supervised.reward_training``). Returns (sft_dir, reward_model_dir)."""
    from agents.feedback.collect import LABELS_FILE, FeedbackConfig, collect_feedback
    from agents.supervised.reward_training import RewardModelConfig, train_reward_model
    from agents.supervised.sft import SFTConfig, train_sft

    task = make_task(task_name)
    texts = [s.prompt + s.reference for s in task.dataset("train", 2000, seed=0) + task.dataset("test", 200, seed=0)]
    tiny = save_tiny(root / "tiny", texts, "char", TinyModelConfig(n_layer=2, n_embd=64, n_head=4, seed=seed))
    sft = train_sft(SFTConfig(model_name_or_path=str(tiny), output_dir=str(root / "sft"), env_id=env_id(task_name), max_steps=sft_steps, batch_size=64,
                              learning_rate=3e-3, warmup_steps=20, eval_every=0, eval_size=256, seed=seed))
    feedback = root / "feedback"
    collect_feedback(FeedbackConfig(model_name_or_path=str(sft.output_dir), output_dir=str(feedback), env_id=env_id(task_name),
                                    num_prompts=feedback_prompts, k=4, seed=seed), output_fn=lambda text: None)
    rm = train_reward_model(RewardModelConfig(data=str(feedback / LABELS_FILE), output_dir=str(root / "rm"),
                                              model_name_or_path=str(sft.output_dir), max_steps=rm_steps, eval_every=0, seed=seed))
    return sft.output_dir, rm.output_dir


@contextmanager
def model_forwards(device_type: str) -> Iterator[list[tuple[bool, torch.dtype, torch.dtype, bool]]]:
    """Record every weight matrix product of a model (``nn.Linear`` and GPT-2's ``Conv1D``: policy, backbone,
    heads, reward model): whether autocast was on for ``device_type``, its dtype, the weight's dtype and
    whether gradients were recorded (a training forward).

    Recorded at the matrix products, not at the model: accelerate's mixed precision wraps a prepared
    model's ``forward`` in autocast, and a hook on that model runs after the wrapper has exited."""
    seen: list[tuple[bool, torch.dtype, torch.dtype, bool]] = []

    def hook(module, args, output):
        if isinstance(module, (torch.nn.Linear, Conv1D)):
            seen.append((torch.is_autocast_enabled(device_type), torch.get_autocast_dtype(device_type),
                         module.weight.dtype, torch.is_grad_enabled()))

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()
