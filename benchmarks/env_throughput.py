"""Env throughput on CPU: batched vector-env stepping vs N single envs, and batched reward scoring.

Why: the envs sit inside every RL loop, so their cost per token must be small next to the policy's;
this measures it with a random policy (no model), at token and sequence granularity, for the
batched ``LLMVectorEnv`` and for Gymnasium's ``SyncVectorEnv`` of N single ``LLMEnv`` (what a
per-env Python loop costs), and measures samples/s of the rule rewards and of a tiny learned
reward model at several batch sizes. Run ``python -m benchmarks.env_throughput``; it writes
``benchmarks/results/env_throughput_cpu.json`` with the hardware and versions it ran on.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import torch
from transformers import GPT2Config, GPT2ForSequenceClassification

import llm_gym  # noqa: F401  (registers the env ids)
from benchmarks.records import git_commit, hardware_info, package_versions
from llm_gym.models import train_tokenizer
from llm_gym.rewards import make_reward
from llm_gym.tasks import make_task

RESULTS = Path(__file__).parent / "results" / "env_throughput_cpu.json"


@dataclass
class ThroughputConfig:
    """What is measured; saved in the results file."""

    env_id: str = "llm_gym/Arithmetic-v0"
    num_envs: list[int] = field(default_factory=lambda: [1, 16, 64, 256])
    batch_sizes: list[int] = field(default_factory=lambda: [1, 16, 64, 256])
    rule_rewards: list[str] = field(
        default_factory=lambda: ["exact_match", "numeric_match", "verifier", "bleu", "chrf", "rouge",
                                 "0.7*bleu + 0.3*length:max_chars=8"]
    )
    min_seconds: float = 1.0  # each of a measurement's 3 repeats runs at least this long (see ``timed``)
    torch_threads: int = 1
    seed: int = 0


def timed(fn: Callable[[], int], min_seconds: float, repeats: int = 3) -> dict[str, float]:
    """Units per second of ``fn`` (which returns the units it processed), after one warm-up call.

    ``per_s``: wall clock, the best of ``repeats`` runs of at least ``min_seconds`` (the run least
    disturbed by other processes, as ``timeit`` recommends); ``per_cpu_s``: per CPU-second of this
    process in that run, which on a shared machine says what the code costs, whatever the load.
    """
    fn()
    best = {"per_s": 0.0, "per_cpu_s": 0.0}
    for _ in range(repeats):
        units, start, cpu_start = 0, time.perf_counter(), time.process_time()
        while (elapsed := time.perf_counter() - start) < min_seconds or units == 0:
            units += fn()
        if units / elapsed > best["per_s"]:
            best = {"per_s": units / elapsed, "per_cpu_s": units / max(time.process_time() - cpu_start, 1e-9)}
    return best


def _actions(env: Any, granularity: str, num_envs: int, vocab: int, seed: int) -> Callable[[], np.ndarray]:
    rng = np.random.default_rng(seed)
    shape = (num_envs, env.single_action_space.nvec.shape[0]) if granularity == "sequence" else (num_envs,)
    return lambda: rng.integers(0, vocab, size=shape)


def vector_steps(env: Any, granularity: str, num_envs: int, vocab: int, steps: int, seed: int) -> Callable[[], int]:
    """``steps`` random steps of an ``LLMVectorEnv`` (SAME_STEP autoreset); returns the tokens appended.

    Token granularity appends one token per env per step; sequence granularity a whole completion
    per env per step, cut at its first EOS (its length is in the ended episode's final info).
    """
    actions = _actions(env, granularity, num_envs, vocab, seed)
    env.reset(seed=seed)

    def run() -> int:
        tokens = 0
        for _ in range(steps):
            *_, info = env.step(actions())
            if granularity == "token":
                tokens += num_envs
            else:
                tokens += int(info["final_info"]["completion_length"].sum())
        return tokens

    return run


def sync_steps(env: Any, granularity: str, num_envs: int, vocab: int, steps: int, seed: int) -> Callable[[], int]:
    """As ``vector_steps`` for Gymnasium's SyncVectorEnv, whose NEXT_STEP reset steps append nothing."""
    actions = _actions(env, granularity, num_envs, vocab, seed)
    env.reset(seed=seed)
    resetting = np.zeros(num_envs, dtype=bool)

    def run() -> int:
        nonlocal resetting
        tokens = 0
        for _ in range(steps):
            _, _, terminated, truncated, info = env.step(actions())
            if granularity == "token":
                tokens += int((~resetting).sum())
            else:
                ended = zip(info.get("completion_ids", []), info.get("_completion_ids", []))
                tokens += sum(len(ids) for ids, ok in ended if ok)
            resetting = terminated | truncated
        return tokens

    return run


def measure_stepping(config: ThroughputConfig) -> list[dict[str, Any]]:
    rows = []
    for granularity in ("token", "sequence"):
        for n in config.num_envs:
            vector_env = gymnasium.make_vec(
                config.env_id, num_envs=n, vectorization_mode="vector_entry_point",
                granularity=granularity, autoreset_mode="same_step",
            )
            vocab = vector_env.unwrapped.problem.vocab_size
            steps = max(1, 256 // n)
            vector = timed(vector_steps(vector_env, granularity, n, vocab, steps, config.seed), config.min_seconds)
            vector_env.close()
            sync_env = gymnasium.make_vec(config.env_id, num_envs=n, vectorization_mode="sync", granularity=granularity)
            sync = timed(sync_steps(sync_env, granularity, n, vocab, steps, config.seed), config.min_seconds)
            sync_env.close()
            rows.append({
                "granularity": granularity,
                "num_envs": n,
                "vector_tokens_per_s": vector["per_s"],
                "vector_tokens_per_cpu_s": vector["per_cpu_s"],
                "sync_vector_env_tokens_per_s": sync["per_s"],
                "sync_vector_env_tokens_per_cpu_s": sync["per_cpu_s"],
                "speedup": vector["per_s"] / sync["per_s"],
                "speedup_cpu": vector["per_cpu_s"] / sync["per_cpu_s"],
            })
            print(json.dumps(rows[-1]), flush=True)
    return rows


def tiny_reward_model(out_dir: Path, texts: list[str]) -> Path:
    """A random-init 2-layer GPT-2 classifier (num_labels=1) with a char tokenizer, saved like a hub model."""
    tokenizer = train_tokenizer(texts, kind="char")
    torch.manual_seed(0)
    config = GPT2Config(
        n_layer=2, n_embd=64, n_head=2, n_positions=64, num_labels=1, vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    GPT2ForSequenceClassification(config).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def measure_rewards(config: ThroughputConfig) -> list[dict[str, Any]]:
    task = make_task("arithmetic")
    samples = task.dataset("train", max(config.batch_sizes), seed=config.seed)
    rng = np.random.default_rng(config.seed)
    completions = [s.reference if rng.random() < 0.5 else str(rng.integers(0, 200)) for s in samples]
    prompts = [s.prompt for s in samples]
    metadata = [{**s.metadata, "reference": s.reference} for s in samples]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = tiny_reward_model(Path(tmp) / "rm", [p + c for p, c in zip(prompts, completions)])
        specs = config.rule_rewards + [f"learned:path={path},batch_size={max(config.batch_sizes)}"]
        for spec in specs:
            reward = make_reward(spec, task)
            for batch in config.batch_sizes:
                def score(batch: int = batch) -> int:
                    reward(prompts[:batch], completions[:batch], metadata[:batch])
                    return batch

                name = "learned (tiny GPT-2 classifier)" if spec.startswith("learned") else spec
                rate = timed(score, config.min_seconds)
                rows.append({"reward": name, "batch_size": batch, "samples_per_s": rate["per_s"],
                             "samples_per_cpu_s": rate["per_cpu_s"]})
                print(json.dumps(rows[-1]), flush=True)
    return rows


def write_results(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1) + "\n")
    os.replace(tmp, path)  # atomic


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--min-seconds", type=float, default=ThroughputConfig.min_seconds)
    parser.add_argument("--threads", type=int, default=ThroughputConfig.torch_threads)
    args = parser.parse_args(argv)
    config = ThroughputConfig(min_seconds=args.min_seconds, torch_threads=args.threads)
    torch.set_num_threads(config.torch_threads)
    load_before = os.getloadavg()[0]  # the machine may be shared: the per-CPU-second rates are the robust ones
    start = time.perf_counter()
    stepping = measure_stepping(config)
    rewards = measure_rewards(config)
    write_results(
        {
            "benchmark": "env_throughput",
            "device": "cpu",
            "hardware": {**hardware_info(), "load_average_1m": [load_before, os.getloadavg()[0]]},
            "versions": package_versions(),
            "git_commit": git_commit(),
            "config": asdict(config),
            "policy": "uniformly random tokens (no model)",
            "stepping": stepping,
            "reward_scoring": rewards,
            "wall_s": time.perf_counter() - start,
        },
        args.out,
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
