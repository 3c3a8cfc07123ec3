"""What the TRL peer scripts share: timing a ``Trainer``'s steps and printing the one JSON line ``benchmarks.perf``
reads. Run by path inside the TRL virtualenvs (llm_gym is not importable there), like ``peak_memory``."""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable
from typing import Any

from peak_memory import peak_rss_mb


def left_padded_tokenizer(policy: str, threads: int) -> Any:
    """The policy's tokenizer, padding on the left as TRL's trainers generate; sets torch's threads first (0: leave)."""
    import torch
    from transformers import AutoTokenizer

    if threads:
        torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(policy)
    tokenizer.padding_side = "left"
    return tokenizer


def timed_train(trainer: Any, samples_per_step: int, unit: str) -> dict[str, Any]:
    """Train, timing each optimizer step; the rate is taken from the median step after the first (warm-up) one.

    ``unit`` names the step in the result's keys (``step_s``, ``steps_timed``; PPO's ``iteration_s``...).
    """
    import datasets
    import torch
    import transformers
    import trl

    stamps: list[float] = []

    class Stamp(transformers.TrainerCallback):
        def on_step_end(self, *args, **kwargs):
            stamps.append(time.perf_counter())

    trainer.add_callback(Stamp())
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    trainer.train()
    total = time.perf_counter() - start
    steady = [b - a for a, b in zip(stamps, stamps[1:])]
    seconds = sorted(steady)[len(steady) // 2] if steady else total
    result = {
        "samples_per_s": samples_per_step / seconds, f"{unit}_s": seconds, f"{unit}s_timed": len(steady),
        "total_s": total, "peak_rss_mb": peak_rss_mb(),
        "versions": {"trl": trl.__version__, "transformers": transformers.__version__, "torch": torch.__version__,
                     "datasets": datasets.__version__},
    }
    if torch.cuda.is_available():
        result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def report(measure: Callable[[], dict[str, Any]]) -> int:
    """Print ``measure()``'s result as one JSON line, or ``{"error", "traceback"}``: a peer's failure is reported
    in the results file, never raised into the benchmark."""
    try:
        result = measure()
    except Exception as err:
        result = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()[-2000:]}
    print(json.dumps(result))
    return 0
