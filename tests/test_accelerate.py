"""The supervised loops under ``accelerate launch`` with 2 CPU processes (DDP over gloo), unchanged code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from llm_gym.models import TinyModelConfig, save_tiny
from llm_gym.rewards import LearnedReward

ROOT = Path(__file__).resolve().parents[1]


def test_reward_model_training_runs_on_two_cpu_processes(tmp_path):
    rng = np.random.default_rng(0)
    letters = list("abcdefghij")
    words = ["".join(rng.choice(letters, size=int(rng.integers(1, 4)))) for _ in range(200)]
    model_dir = save_tiny(tmp_path / "tok", [f"copy {w}={w}" for w in words], "char", TinyModelConfig(n_layer=1, n_embd=32))
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(
        json.dumps({"prompt": f"copy {w}=", "chosen": w, "rejected": w[::-1] + "a"}) + "\n" for w in words
    ))
    out = tmp_path / "rm"
    accelerate = Path(sys.executable).with_name("accelerate")
    # `accelerate launch --cpu` alone starts one process (multi-CPU jobs expect mpirun); the torchrun
    # launcher (`--multi_gpu`) starts 2 ranks, and our `--cpu true` makes the Accelerator use gloo DDP
    # on CPU. On a GPU machine drop `--cpu true`: the same command is multi-GPU DDP.
    command = [
        str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
        "--dynamo_backend", "no", "-m", "agents.supervised.reward_training", "--cpu", "true",
        "--data", str(data), "--output-dir", str(out), "--tokenizer", str(model_dir), "--n-layer", "1", "--n-embd", "32",
        "--max-steps", "4", "--batch-size", "8", "--eval-fraction", "0.2", "--log-every", "2", "--save-steps", "2",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-4000:]
    assert "2 process(es)" in log  # both ranks joined one DDP job
    results = json.loads((out / "reward_model_results.json").read_text())
    assert set(results["final"]) >= {"eval/pairwise_accuracy", "eval/loss"}
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "loss/train" in m] == [2, 4]  # one writer (the main process), no duplicates
    assert (out / "checkpoints" / "step-00000004" / "model.safetensors").is_file()
    scores = LearnedReward(out)(["copy ab="], ["ab"], [{}])
    assert scores.shape == (1,) and np.isfinite(scores).all()
