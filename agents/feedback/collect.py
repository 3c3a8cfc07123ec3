"""Feedback collection: sample k completions per prompt from a policy, have them labeled, write JSONL.

Why this shape: reward models are learned from comparisons (or good/bad ratings) of the
*policy's own* outputs, so the collection samples from a policy directory, turns each prompt's k
completions into the items a labeler sees (every pair, or every single completion), and writes
one row per label in the formats the loaders read: preference pairs ``{"prompt", "chosen",
"rejected"}`` or ratings ``{"prompt", "completion", "label"}`` (plus an ``"id"``).

A session is resumable and loses nothing: the sampled candidates are written first
(``<output>.candidates.jsonl``, atomically) and reused on the next run, every label is appended
and fsynced as it is given, and items that produced no row (ties, skips, identical completions,
equal gold scores) are recorded in ``<output>.skipped.jsonl``. A rerun asks only about items that
appear in neither file; Ctrl-C stops after the last label written.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from agents.supervised.data import generate_completions, sample_metadata
from agents.feedback.labelers import SimulatedLabeler, TerminalLabeler
from agents.run_config import add_config_args, config_from_args, save_config
from agents.supervised.sft import split_samples
from llm_gym.models import load_causal_lm, load_tokenizer
from llm_gym.rewards import make_reward
from llm_gym.tasks import Task, make_task
from llm_gym.tasks.datasets import DatasetTask


@dataclass
class FeedbackConfig:
    """A feedback-collection run; saved as ``<output>.config.yaml``."""

    policy: str  # local HF causal-LM directory to sample from (e.g. an SFT output)
    output: str  # JSONL file of labels (appended to; resumed from)
    task: str = "arithmetic"
    task_kwargs: dict[str, Any] = field(default_factory=dict)
    data: str | None = None  # JSONL / save_to_disk dataset instead of a built-in task
    data_format: str | None = None
    split: str = "train"
    num_prompts: int = 256
    k: int = 2  # completions per prompt
    temperature: float = 1.0
    top_k: int = 0
    max_new_tokens: int | None = None  # default: the task's
    batch_size: int = 128
    labeler: str = "simulated"  # simulated | terminal
    kind: str = "pairs"  # pairs (every pair of a prompt's k completions) | pointwise (each completion)
    gold_reward: str = "verifier"  # any reward spec; the simulated person's judgement
    noise: float = 0.0  # probability that the simulated person flips a label
    good_threshold: float = 0.5  # pointwise: gold score at or above this is "good"
    device: str = "auto"  # auto | cpu | cuda
    seed: int = 0


@dataclass
class FeedbackStats:
    """Outcome of one session: rows written now, items skipped (by reason), items still unlabeled."""

    written: int = 0
    skipped: Counter = field(default_factory=Counter)
    pending: int = 0
    interrupted: bool = False


def sidecar(output: Path, suffix: str) -> Path:
    """``labels.jsonl`` -> ``labels.candidates.jsonl`` etc."""
    return output.with_name(f"{output.stem}.{suffix}{output.suffix or '.jsonl'}")


def load_feedback_task(config: FeedbackConfig) -> Task:
    """The prompt source and gold verifier: a built-in task, or a dataset file read with the policy's tokenizer."""
    if config.data is None:
        return make_task(config.task, **config.task_kwargs)
    return DatasetTask.from_files(config.data, format=config.data_format, tokenizer=load_tokenizer(config.policy))


def sample_candidates(config: FeedbackConfig, task: Task) -> list[dict[str, Any]]:
    """``num_prompts`` prompts of ``split`` with ``k`` sampled completions each (batched KV-cache sampling)."""
    if config.k < 1 or (config.kind == "pairs" and config.k < 2):
        raise ValueError(f"k={config.k} completions per prompt: pairs need k >= 2, ratings k >= 1")
    device = ("cuda" if torch.cuda.is_available() else "cpu") if config.device == "auto" else config.device
    model, tokenizer = load_causal_lm(config.policy, device=device)
    samples = split_samples(task, config.split, config.num_prompts, config.seed)
    if not samples:
        raise ValueError(f"no prompts in split {config.split!r} to collect feedback on")
    generator = torch.Generator(device=device).manual_seed(config.seed)
    completions = generate_completions(
        model,
        tokenizer,
        [s.prompt for s in samples],
        config.max_new_tokens or task.max_new_tokens,
        config.batch_size,
        temperature=config.temperature,
        top_k=config.top_k,
        num_return_sequences=config.k,
        generator=generator,
    )
    return [
        {"id": i, "prompt": s.prompt, "metadata": sample_metadata(s), "completions": completions[i * config.k : (i + 1) * config.k]}
        for i, s in enumerate(samples)
    ]


def load_or_sample_candidates(config: FeedbackConfig, task: Task) -> list[dict[str, Any]]:
    """Reuse ``<output>.candidates.jsonl`` when it exists (a resumed session), else sample and write it atomically."""
    path = sidecar(Path(config.output), "candidates")
    if path.is_file():
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    candidates = sample_candidates(config, task)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(c) + "\n" for c in candidates))
    os.replace(tmp, path)
    return candidates


def items(candidates: list[dict[str, Any]], kind: str) -> Iterator[tuple[str, dict[str, Any], tuple[int, ...]]]:
    """(item id, candidate, completion indices): every pair i<j of a prompt's completions, or every completion."""
    for cand in candidates:
        n = len(cand["completions"])
        for idx in itertools.combinations(range(n), 2) if kind == "pairs" else ((i,) for i in range(n)):
            yield ":".join(map(str, (cand["id"], *idx))), cand, idx


def done_ids(*paths: Path) -> set[str]:
    """Ids of items already answered in previous sessions (a row or a skip record)."""
    ids: set[str] = set()
    for path in paths:
        if path.is_file():
            ids.update(json.loads(line)["id"] for line in path.read_text().splitlines() if line.strip())
    return ids


class LabelLog:
    """Appends JSON rows to a file, flushed and fsynced per row when ``durable`` (a person's labels)."""

    def __init__(self, path: Path, durable: bool):
        self.handle: IO[str] = path.open("a")
        self.durable = durable

    def write(self, row: dict[str, Any]) -> None:
        self.handle.write(json.dumps(row) + "\n")
        self.handle.flush()
        if self.durable:
            os.fsync(self.handle.fileno())

    def close(self) -> None:
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()


def _pair_row(item_id: str, prompt: str, chosen: str, rejected: str) -> dict[str, Any]:
    return {"id": item_id, "prompt": prompt, "chosen": chosen, "rejected": rejected}


def _rating_row(item_id: str, prompt: str, completion: str, good: bool) -> dict[str, Any]:
    return {"id": item_id, "prompt": prompt, "completion": completion, "label": int(good)}


def label_simulated(
    config: FeedbackConfig, task: Task, pending: list, rows: LabelLog, skips: LabelLog, stats: FeedbackStats
) -> None:
    """Label every pending item with the gold reward (one batched scoring call) plus optional noise."""
    labeler = SimulatedLabeler(make_reward(config.gold_reward, task), config.noise, config.good_threshold, config.seed)
    # Score each distinct completion once: the pairs of a prompt share its k completions.
    unique: dict[tuple[int, int], tuple[str, str, dict]] = {}
    for _, cand, idx in pending:
        for i in idx:
            unique.setdefault((cand["id"], i), (cand["prompt"], cand["completions"][i], cand["metadata"]))
    if not unique:
        return
    prompts, texts, metadata = (list(column) for column in zip(*unique.values()))
    scores = dict(zip(unique, labeler.scores(prompts, texts, metadata)))
    if config.kind == "pointwise":
        answers = labeler.rate(np.array([scores[(c["id"], i)] for _, c, (i,) in pending]))
        for (item_id, cand, (i,)), answer in zip(pending, answers):
            rows.write(_rating_row(item_id, cand["prompt"], cand["completions"][i], answer == "good"))
            stats.written += 1
        return
    decided = []
    for item in pending:
        item_id, cand, (i, j) = item
        if cand["completions"][i] == cand["completions"][j]:
            skips.write({"id": item_id, "reason": "identical_completions"})
            stats.skipped["identical_completions"] += 1
        else:
            decided.append(item)
    answers = labeler.compare(
        np.array([scores[(c["id"], i)] for _, c, (i, _) in decided], dtype=np.float32),
        np.array([scores[(c["id"], j)] for _, c, (_, j) in decided], dtype=np.float32),
    )
    for (item_id, cand, (i, j)), answer in zip(decided, answers):
        if answer == "tie":
            skips.write({"id": item_id, "reason": "equal_gold_scores"})
            stats.skipped["equal_gold_scores"] += 1
            continue
        a, b = cand["completions"][i], cand["completions"][j]
        chosen, rejected = (a, b) if answer == "a" else (b, a)
        rows.write(_pair_row(item_id, cand["prompt"], chosen, rejected))
        stats.written += 1


def label_terminal(
    config: FeedbackConfig, pending: list, rows: LabelLog, skips: LabelLog, stats: FeedbackStats, labeler: TerminalLabeler
) -> None:
    """Ask a person about each pending item in order; each answer is on disk before the next question."""
    for n, (item_id, cand, idx) in enumerate(pending, start=1):
        header = f"[{n}/{len(pending)}] item {item_id}"
        if config.kind == "pairs":
            i, j = idx
            if cand["completions"][i] == cand["completions"][j]:
                skips.write({"id": item_id, "reason": "identical_completions"})
                stats.skipped["identical_completions"] += 1
                continue
            # Show the two in an order fixed by the item id, so position carries no information.
            if zlib.crc32(item_id.encode()) % 2:
                i, j = j, i
            a, b = cand["completions"][i], cand["completions"][j]
            answer = labeler.compare(header, cand["prompt"], a, b)
            if answer == "quit":
                break
            if answer in ("a", "b"):
                chosen, rejected = (a, b) if answer == "a" else (b, a)
                rows.write(_pair_row(item_id, cand["prompt"], chosen, rejected))
                stats.written += 1
            else:
                skips.write({"id": item_id, "reason": answer})
                stats.skipped[answer] += 1
        else:
            answer = labeler.rate(header, cand["prompt"], cand["completions"][idx[0]])
            if answer == "quit":
                break
            if answer == "skip":
                skips.write({"id": item_id, "reason": "skip"})
                stats.skipped["skip"] += 1
            else:
                rows.write(_rating_row(item_id, cand["prompt"], cand["completions"][idx[0]], answer == "good"))
                stats.written += 1


def collect_feedback(
    config: FeedbackConfig,
    input_fn: Callable[[str], str] = input,
    output_fn: Callable[[str], None] = print,
) -> FeedbackStats:
    """Run (or resume) a labeling session as configured; see the module docstring for the files."""
    if config.labeler not in ("simulated", "terminal"):
        raise ValueError(f"labeler must be 'simulated' or 'terminal', got {config.labeler!r}")
    if config.kind not in ("pairs", "pointwise"):
        raise ValueError(f"kind must be 'pairs' or 'pointwise', got {config.kind!r}")
    output = Path(config.output)
    task = load_feedback_task(config)
    candidates = load_or_sample_candidates(config, task)
    save_config(config, output.parent, f"{output.stem}.config.yaml")
    skipped_path = sidecar(output, "skipped")
    answered = done_ids(output, skipped_path)
    pending = [item for item in items(candidates, config.kind) if item[0] not in answered]
    stats = FeedbackStats()
    rows, skips = LabelLog(output, durable=config.labeler == "terminal"), LabelLog(skipped_path, durable=True)
    try:
        if config.labeler == "simulated":
            label_simulated(config, task, pending, rows, skips, stats)
        else:
            label_terminal(config, pending, rows, skips, stats, TerminalLabeler(input_fn, output_fn))
    except KeyboardInterrupt:
        stats.interrupted = True
    finally:
        rows.close()
        skips.close()
    stats.pending = len(pending) - stats.written - sum(stats.skipped.values())
    skipped = ", ".join(f"{n} {reason}" for reason, n in sorted(stats.skipped.items())) or "none"
    stop = "interrupted; " if stats.interrupted else ""
    output_fn(
        f"{stop}wrote {stats.written} labels to {output} (skipped: {skipped}); "
        f"{stats.pending} items left{' - rerun the same command to resume' if stats.pending else ''}"
    )
    return stats


def run(args: argparse.Namespace) -> int:
    stats = collect_feedback(config_from_args(FeedbackConfig, args))
    return 130 if stats.interrupted else 0


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """``llm-gym feedback``: the ``llm_gym.commands`` entry point."""
    parser = subparsers.add_parser("feedback", help="sample completions from a policy and collect preference labels")
    add_config_args(parser, FeedbackConfig)
    parser.set_defaults(func=run)


if __name__ == "__main__":
    import sys

    cli = argparse.ArgumentParser(prog="python -m agents.feedback")
    add_config_args(cli, FeedbackConfig)
    sys.exit(run(cli.parse_args()))
