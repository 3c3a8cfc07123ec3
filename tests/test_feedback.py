"""Feedback collection: simulated labels (with noise), the terminal labeler under scripted input and Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from llm_gym.feedback import read_feedback
from agents.feedback.collect import (
    CANDIDATES_FILE,
    LABELS_FILE,
    SKIPPED_FILE,
    FeedbackConfig,
    collect_feedback,
    items,
    load_feedback_problem,
    load_or_sample_candidates,
)
from agents.feedback.labelers import SimulatedLabeler
from llm_gym.rewards import make_reward
from llm_gym.tasks import make_task
from llm_gym.tasks.datasets import DatasetTask

ROOT = Path(__file__).resolve().parents[1]


def config(policy: Path, output: Path, **overrides) -> FeedbackConfig:
    base = FeedbackConfig(model_name_or_path=str(policy), output_dir=str(output), env_id="llm_gym/Arithmetic-v0",
                          num_prompts=6, k=3, max_new_tokens=4)
    return replace(base, **overrides)


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def labels(out: Path) -> list[dict]:
    return lines(out / LABELS_FILE)


def test_simulated_labeler_prefers_the_gold_winner_and_flips_with_noise():
    labeler = SimulatedLabeler(make_reward("verifier", make_task("arithmetic")), noise=0.0)
    a, b = np.tile([1.0, 0.0, 0.5], 1000), np.tile([0.0, 1.0, 0.5], 1000)
    answers = labeler.compare(a, b)
    assert answers[:3] == ["a", "b", "tie"]
    flipped = SimulatedLabeler(labeler.gold, noise=1.0).compare(a, b)
    assert flipped[:3] == ["b", "a", "tie"]  # ties carry no preference, noise or not
    noisy = SimulatedLabeler(labeler.gold, noise=0.25, seed=1).compare(a, b)
    decided = [i for i, x in enumerate(answers) if x != "tie"]
    flip_rate = np.mean([noisy[i] != answers[i] for i in decided])
    assert 0.2 < flip_rate < 0.3  # 2000 draws: the 3-sigma band of 0.25 is +-0.03
    assert SimulatedLabeler(labeler.gold, good_threshold=0.5).rate(np.array([1.0, 0.0])) == ["good", "bad"]
    with pytest.raises(ValueError, match="label noise must be a probability"):
        SimulatedLabeler(labeler.gold, noise=1.5)


def test_simulated_pairs_follow_the_gold_reward(tiny_model_dir, tmp_path):
    out = tmp_path / "pairs"
    stats = collect_feedback(config(tiny_model_dir, out, env_kwargs={"gold_reward": "chrf"}, num_prompts=20, k=4), output_fn=lambda s: None)
    rows = labels(out)
    skipped = lines(out / SKIPPED_FILE)
    assert stats.written == len(rows) > 0
    assert len(rows) + len(skipped) == 20 * 6  # every pair of 4 completions is a row or a counted skip
    assert sum(stats.skipped.values()) == len(skipped)
    chrf = make_reward("chrf")
    for row in rows:
        assert set(row) == {"id", "prompt", "chosen", "rejected"} and row["chosen"] != row["rejected"]
    references = {c["prompt"]: c["metadata"] for c in lines(out / CANDIDATES_FILE)}
    meta = [references[r["prompt"]] for r in rows]
    prompts = [r["prompt"] for r in rows]
    gap = chrf(prompts, [r["chosen"] for r in rows], meta) - chrf(prompts, [r["rejected"] for r in rows], meta)
    assert (gap > 0).all()
    # The loaders read it: our reward-model reader and the core preference-format loader.
    assert len(read_feedback(out / LABELS_FILE).pairs) == len(rows)
    assert len(DatasetTask.from_jsonl(out / LABELS_FILE).samples) == len(rows)


def test_simulated_pointwise_ratings_and_rerun_adds_nothing(tiny_model_dir, tmp_path):
    out = tmp_path / "ratings"
    cfg = config(tiny_model_dir, out, kind="pointwise", env_kwargs={"gold_reward": "chrf"}, good_threshold=0.2, k=2)
    stats = collect_feedback(cfg, output_fn=lambda s: None)
    rows = labels(out)
    assert stats.written == len(rows) == 12 and {r["label"] for r in rows} <= {0, 1}
    assert set(rows[0]) == {"id", "prompt", "completion", "label"}
    again = collect_feedback(cfg, output_fn=lambda s: None)  # resumed: nothing left to label
    assert again.written == 0 and len(labels(out)) == 12
    assert len(read_feedback(out / LABELS_FILE).ratings) == 12


class Script:
    """Scripted keyboard: returns answers in order; an exception instance is raised instead (Ctrl-C)."""

    def __init__(self, answers):
        self.answers, self.prompts = list(answers), []

    def __call__(self, prompt: str) -> str:
        self.prompts.append(prompt)
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer


def test_terminal_labeler_keeps_every_label_across_ctrl_c_and_resume(tiny_model_dir, tmp_path):
    out = tmp_path / "human"
    cfg = config(tiny_model_dir, out, labeler="terminal", num_prompts=3, k=3, temperature=1.5)
    shown: list[str] = []
    first = Script(["a", "x", "b", "t", KeyboardInterrupt()])
    stats = collect_feedback(cfg, input_fn=first, output_fn=shown.append)
    assert stats.interrupted and stats.written == 2 and stats.skipped["tie"] == 1
    assert any("unknown answer 'x'" in s for s in shown)  # an unknown key is asked again
    assert any("interrupted" in s and "rerun the same command to resume" in s for s in shown)
    assert len(labels(out)) == 2 and len(lines(out / SKIPPED_FILE)) == 1  # on disk already
    candidates_before = (out / CANDIDATES_FILE).read_text()

    total = len(list(items(lines(out / CANDIDATES_FILE), "pairs")))
    identical = sum(c["completions"][i] == c["completions"][j] for _, c, (i, j) in items(lines(out / CANDIDATES_FILE), "pairs"))
    second = Script(["s"] + ["a", "b"] * total)
    stats = collect_feedback(cfg, input_fn=second, output_fn=lambda s: None)
    assert not stats.interrupted and stats.pending == 0
    assert (out / CANDIDATES_FILE).read_text() == candidates_before  # resumed on the same samples
    rows, skips = labels(out), lines(out / SKIPPED_FILE)
    ids = [r["id"] for r in rows + skips]
    assert len(ids) == len(set(ids)) == total  # each item answered exactly once over both sessions
    assert len(second.prompts) == total - 3 - identical  # only unanswered, non-identical items were asked
    assert {r["reason"] for r in skips} <= {"tie", "skip", "identical_completions"}
    # The first session's labels are still there, unchanged.
    assert [r["id"] for r in rows[:2]] == [r["id"] for r in labels(out)[:2]]
    third = Script([EOFError()])  # end of input is a quit, not a crash
    assert collect_feedback(cfg, input_fn=third, output_fn=lambda s: None).written == 0


def test_terminal_labeler_subprocess_survives_sigint(tiny_model_dir, tmp_path):
    out = tmp_path / "cli"
    cfg = config(tiny_model_dir, out, labeler="terminal", num_prompts=4, k=2, temperature=1.5)
    candidates = load_or_sample_candidates(cfg, load_feedback_problem(cfg))  # sampled once, reused by both sessions
    n_items = sum(c["completions"][0] != c["completions"][1] for c in candidates)
    assert n_items >= 2
    command = [
        sys.executable, "-m", "llm_gym.cli", "feedback", "--model_name_or_path", str(tiny_model_dir), "--output_dir", str(out),
        "--labeler", "terminal", "--num_prompts", "4", "--k", "2", "--temperature", "1.5", "--max_new_tokens", "4",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
                            # a shell's background jobs inherit SIGINT ignored, which Python keeps: restore the default
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    proc.stdin.write("a\n")
    proc.stdin.flush()
    deadline = time.time() + 120
    while len(labels(out)) < 1 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert len(labels(out)) == 1, proc.communicate(timeout=30)[0]
    proc.send_signal(signal.SIGINT)  # Ctrl-C while it waits for the second answer
    proc.wait(timeout=60)  # stdin stays open, so only Ctrl-C can end the session here
    output = proc.stdout.read()
    assert proc.returncode == 130, output
    assert "interrupted" in output and len(labels(out)) == 1
    done = subprocess.run(command, cwd=ROOT, input="b\n" * n_items, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = labels(out)
    assert len(rows) == n_items and len({r["id"] for r in rows}) == n_items


def test_bad_feedback_input(tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="pairs need k >= 2"):
        config(tiny_model_dir, tmp_path / "a", k=1)
    with pytest.raises(ValueError, match=r"--noise: label noise must be a probability in \[0, 1\], got 1.5"):
        config(tiny_model_dir, tmp_path / "b", noise=1.5)
    same = tmp_path / "same.jsonl"
    same.write_text(
        json.dumps({"prompt": "1+1=", "chosen": "2", "rejected": "2"}) + "\n"
        + json.dumps({"prompt": "1+2=", "chosen": "3", "rejected": "4"}) + "\n"
    )
    data = read_feedback(same)
    assert len(data.pairs) == 1 and data.skipped == {"chosen_equals_rejected": 1}
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps({"prompt": "1+1=", "chosen": "2"}) + "\n")
    with pytest.raises(ValueError, match=r"broken.jsonl:1: row is missing field\(s\) \['rejected'\]"):
        read_feedback(broken)


def test_conversational_preference_rows_are_refused_naming_the_line_and_the_format(tmp_path):
    """TRL's conversational pairs hold message lists; the trainers read texts, so the error says how to render them."""
    user = [{"role": "user", "content": "1+1="}]
    rows = tmp_path / "conversational.jsonl"
    rows.write_text(json.dumps({"prompt": "1+2=", "chosen": "3", "rejected": "4"}) + "\n" + json.dumps(
        {"prompt": user, "chosen": [{"role": "assistant", "content": "2"}],
         "rejected": [{"role": "assistant", "content": "3"}]}) + "\n")
    with pytest.raises(ValueError, match=r"conversational.jsonl:2: field 'prompt' is a list of chat messages.*"
                                         r"apply_chat_template"):
        read_feedback(rows)
    rows.write_text(json.dumps({"prompt": "1+2=", "completion": 3, "label": 1}) + "\n")
    with pytest.raises(ValueError, match=r"conversational.jsonl:1: field 'completion' must be a string, got int"):
        read_feedback(rows)


def test_terminal_good_bad_ratings(tiny_model_dir, tmp_path):
    out = tmp_path / "ratings"
    cfg = config(tiny_model_dir, out, labeler="terminal", kind="pointwise", num_prompts=2, k=2)
    stats = collect_feedback(cfg, input_fn=Script(["g", "b", "s", "q"]), output_fn=lambda s: None)
    assert (stats.written, dict(stats.skipped), stats.pending, stats.interrupted) == (2, {"skip": 1}, 1, False)
    assert [r["label"] for r in labels(out)] == [1, 0]
    assert len(read_feedback(out / LABELS_FILE).ratings) == 2
