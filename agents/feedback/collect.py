"""Feedback collection: sample k completions per prompt from a policy, have them labeled, write JSONL.

Why this shape: reward models are learned from comparisons (or good/bad ratings) of the
*policy's own* outputs, so the collection samples from a policy directory, turns each prompt's k
completions into the items a labeler sees (every pair, or every single completion), and writes
one row per label in the formats the loaders read: preference pairs ``{"prompt", "chosen",
"rejected"}`` or ratings ``{"prompt", "completion", "label"}`` (plus an ``"id"``).

Prompts and the simulated person's judgement come from an env (``env_id``/``env_kwargs``, its
gold reward), the same one the RL stage optimises, so a reward model learned here fits that env.

A session lives in ``output_dir`` and loses nothing: the sampled candidates are written first
(``candidates.jsonl``, atomically) and reused on the next run, every label is appended to
``feedback.jsonl`` and fsynced as it is given, and items that produced no row (ties, skips,
identical completions, equal gold scores) are recorded in ``skipped.jsonl``. Rerunning the same
command resumes: it asks only about items that appear in neither file; Ctrl-C stops after the last
label written. A rerun with another setup (model, env, sampling, labeler) is refused, naming it.
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
from typing import IO, Any, Literal

import numpy as np
import torch

from agents.feedback.labelers import SimulatedLabeler, TerminalLabeler
from agents.run_config import save_config
from agents.run_record import check_resumable, write_run_record
from agents.supervised.data import env_problem, generate_completions, sample_metadata
from agents.supervised.sft import split_samples
from llm_gym.commands import ENV_KWARGS_HELP, add_dataclass_command, require_env_id
from llm_gym.envs import TextGenProblem
from llm_gym.models import load_causal_lm, load_tokenizer
from llm_gym.rewards import RewardModel
from llm_gym.tasks import Split

LABELS_FILE = "feedback.jsonl"
CANDIDATES_FILE = "candidates.jsonl"
SKIPPED_FILE = "skipped.jsonl"
# What the candidates and labels of a session depend on: a rerun with other values must not resume it.
SETUP_KEYS = ("model_name_or_path", "env_id", "env_kwargs", "split", "num_prompts", "k", "temperature", "top_k",
              "max_new_tokens", "labeler", "kind", "noise", "good_threshold", "seed")


@dataclass
class FeedbackConfig:
    """Sample k completions per prompt of an env from a policy and have them labelled; rerunning resumes the session."""

    model_name_or_path: str = field(metadata={"help": "local HF causal-LM directory to sample from (e.g. the SFT output)", "path": "dir"})
    output_dir: str = field(metadata={"help": f"session directory: labels in {LABELS_FILE}, candidates, skipped items, config (rerun to resume)", "path": "output"})
    env_id: str = field(default="llm_gym/Arithmetic-v0", metadata={"help": "env whose prompts are sampled and whose gold reward is the simulated person"})
    env_kwargs: dict[str, Any] = field(default_factory=dict, metadata={"help": ENV_KWARGS_HELP})
    split: Split = field(default="train", metadata={"help": "split of the env's task the prompts come from"})
    num_prompts: int = field(default=256, metadata={"help": "prompts to sample completions for"})
    k: int = field(default=2, metadata={"help": "completions per prompt (pairs need at least 2)"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature"})
    top_k: int = field(default=0, metadata={"help": "sample from the k most likely tokens (0: all)"})
    max_new_tokens: int | None = field(default=None, metadata={"help": "completion length limit (default: the env's)"})
    batch_size: int = field(default=128, metadata={"help": "prompts per sampling batch"})
    labeler: Literal["simulated", "terminal"] = field(default="simulated", metadata={"help": "simulated: the env's gold reward; terminal: a person at the keyboard"})
    kind: Literal["pairs", "pointwise"] = field(default="pairs", metadata={"help": "pairs: every pair of a prompt's completions; pointwise: good/bad per completion"})
    noise: float = field(default=0.0, metadata={"help": "probability that the simulated person flips a label"})
    good_threshold: float = field(default=0.5, metadata={"help": "pointwise: a gold score at or above this is good"})
    device: Literal["auto", "cpu", "cuda"] = field(default="auto", metadata={"help": "where to sample (auto: CUDA when present)"})
    seed: int = field(default=0, metadata={"help": "seed of the prompt draw, the sampling and the label noise"})

    def __post_init__(self) -> None:
        require_env_id(self.env_id)
        if self.k < 1 or (self.kind == "pairs" and self.k < 2):
            raise ValueError(f"argument --k: {self.k} completions per prompt; pairs need k >= 2, ratings k >= 1")
        if not 0.0 <= self.noise <= 1.0:
            raise ValueError(f"argument --noise: label noise must be a probability in [0, 1], got {self.noise}")


@dataclass
class FeedbackStats:
    """Outcome of one session: rows written now, items skipped (by reason), items still unlabeled."""

    written: int = 0
    skipped: Counter = field(default_factory=Counter)
    pending: int = 0
    interrupted: bool = False


def load_feedback_problem(config: FeedbackConfig) -> TextGenProblem:
    """The prompt source and gold reward: the env ``env_id`` made with the policy's tokenizer."""
    return env_problem(config.env_id, config.env_kwargs, load_tokenizer(config.model_name_or_path))


def sample_candidates(config: FeedbackConfig, problem: TextGenProblem) -> list[dict[str, Any]]:
    """``num_prompts`` prompts of ``split`` with ``k`` sampled completions each (batched KV-cache sampling)."""
    device = ("cuda" if torch.cuda.is_available() else "cpu") if config.device == "auto" else config.device
    model, tokenizer = load_causal_lm(config.model_name_or_path, device=device)
    samples = split_samples(problem.task, config.split, config.num_prompts, config.seed)
    if not samples:
        raise ValueError(f"no prompts in split {config.split!r} to collect feedback on")
    generator = torch.Generator(device=device).manual_seed(config.seed)
    completions = generate_completions(
        model,
        tokenizer,
        [s.prompt for s in samples],
        config.max_new_tokens or problem.max_new_tokens,
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


def load_or_sample_candidates(config: FeedbackConfig, problem: TextGenProblem) -> list[dict[str, Any]]:
    """Reuse ``candidates.jsonl`` when it exists (a resumed session), else sample and write it atomically."""
    path = Path(config.output_dir) / CANDIDATES_FILE
    if path.is_file():
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    candidates = sample_candidates(config, problem)
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
    config: FeedbackConfig, gold: RewardModel, pending: list, rows: LabelLog, skips: LabelLog, stats: FeedbackStats
) -> None:
    """Label every pending item with the gold reward (one batched scoring call) plus optional noise."""
    labeler = SimulatedLabeler(gold, config.noise, config.good_threshold, config.seed)
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
    out = Path(config.output_dir)
    check_resumable(out, "feedback", config, keys=SETUP_KEYS)
    problem = load_feedback_problem(config)
    if config.labeler == "simulated" and problem.gold_reward is None:
        raise ValueError(f"{config.env_id} with env_kwargs {config.env_kwargs} has no gold reward for the simulated labeler")
    candidates = load_or_sample_candidates(config, problem)
    save_config(config, out, "feedback_config.yaml")
    write_run_record(out, "feedback", config)
    output, skipped_path = out / LABELS_FILE, out / SKIPPED_FILE
    answered = done_ids(output, skipped_path)
    pending = [item for item in items(candidates, config.kind) if item[0] not in answered]
    stats = FeedbackStats()
    rows, skips = LabelLog(output, durable=config.labeler == "terminal"), LabelLog(skipped_path, durable=True)
    try:
        if config.labeler == "simulated":
            label_simulated(config, problem.gold_reward, pending, rows, skips, stats)
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


def run(config: FeedbackConfig) -> int:
    stats = collect_feedback(config)
    return 130 if stats.interrupted else 0


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """``llm-gym feedback``: the ``llm_gym.commands`` entry point."""
    add_dataclass_command(subparsers, "feedback", "sample completions from a policy and collect preference labels",
                          FeedbackConfig, run)
