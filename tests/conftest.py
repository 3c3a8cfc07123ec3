"""Shared fixtures: tiny models and tokenizers built by the project (nothing downloads)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from llm_gym.models import TinyModelConfig, save_tiny
from llm_gym.tasks import make_task

# One thread: the suite's models are tiny, and on a shared machine two threads per process oversubscribe the
# cores, where OpenMP's spin-waiting made the demo test take over 10 minutes instead of 1.5 (load 4, 2 cores).
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A random-init 2-layer GPT-2 with a char tokenizer covering the arithmetic task."""
    task = make_task("arithmetic")
    texts = [s.prompt + s.reference for s in task.dataset("train", 500, seed=0)]
    return save_tiny(tmp_path_factory.mktemp("tiny") / "model", texts, "char", TinyModelConfig(n_layer=2, n_embd=32))


@pytest.fixture
def fresh_accelerate_state():
    """accelerate keeps one process-wide state whose mixed precision cannot change once set; a test that
    trains in another precision than the rest of the suite starts and ends with that state cleared."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)
