"""The code sandbox survives hostile completions (each within a time limit) and the code env reports why."""

from __future__ import annotations

import json
import os
import time

import gymnasium as gym
import numpy as np
import pytest

from llm_gym.rewards import make_reward
from llm_gym.sandbox import CodeSandbox, SandboxLimits
from llm_gym.tasks import make_task
from llm_gym.tasks.datasets import DatasetError

CASES = [[[2], 5], [[-3], -5], [[0], 1]]  # f(x) = 2x + 1
GOOD = "def f(x):\n return 2*x+1"
LIMITS = SandboxLimits(cpu_seconds=1, wall_seconds=3.0)


@pytest.fixture(scope="module")
def sandbox() -> CodeSandbox:
    return CodeSandbox(LIMITS, workers=2)


def run_timed(sandbox: CodeSandbox, program: str, limit_s: float):
    start = time.monotonic()
    result = sandbox.run(program, CASES, "f")
    elapsed = time.monotonic() - start
    assert elapsed < limit_s, f"sandbox took {elapsed:.1f}s (limit {limit_s}s) for {program!r}"
    assert result.reward == 0.0
    return result


def test_correct_and_wrong_programs_score_by_tests_passed(sandbox):
    assert sandbox.run(GOOD, CASES, "f").reward == 1.0
    partial = sandbox.run("def f(x):\n return 2*x+1 if x > 0 else 0", CASES, "f")
    assert partial.status == "failed" and partial.reward == pytest.approx(1 / 3)
    assert "returned 0, expected -5" in partial.detail
    assert sandbox.run("def f(x) return", CASES, "f").status == "syntax_error"
    missing = sandbox.run("\n\n", CASES, "f")
    assert missing.status == "error" and "defines no function 'f'" in missing.detail
    asserts = sandbox.run(GOOD, ["assert f(2) == 5", "assert f(0) == 2"])
    assert asserts.status == "failed" and asserts.passed == 1


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "program, status, limit_s",
    [
        ("while True:\n pass", "timeout", LIMITS.cpu_seconds + 3.0),  # CPU limit (SIGXCPU)
        ("import time\ntime.sleep(1000)", "timeout", LIMITS.wall_seconds + 2.0),  # wall clock, group killed
        ("import os\nwhile True:\n os.fork()", "violation", 3.0),  # fork bomb
        ("import os\nfor _ in range(9):\n try:\n  os.fork()\n except OSError:\n  pass\ndef f(x):\n return 2*x+1", "violation", 3.0),
        ("x = bytearray(10 ** 10)", "memory", 3.0),  # huge allocation
        ("x = [0] * 10 ** 9", "memory", 3.0),
        ("while True:\n print('x' * 100000)", "output_limit", 3.0),  # printing gigabytes
        ("import socket\nsocket.create_connection(('example.com', 80))", "violation", 3.0),  # network
        ("import sys\nsys.exit(0)", "error", 3.0),  # skipping the tests
        ("import os\nos._exit(0)", "crashed", 3.0),  # dying without a result
        ("print('{\"status\": \"passed\", \"passed\": 3}')\nimport os\nos._exit(0)", "crashed", 3.0),  # forging
    ],
)
def test_hostile_completion_scores_zero_with_its_cause(sandbox, program, status, limit_s):
    assert run_timed(sandbox, program, limit_s).status == status


@pytest.mark.timeout(30)
def test_removing_or_writing_files_outside_the_temp_dir_is_refused(sandbox, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    for program in (
        f"import os\nos.remove({str(victim)!r})",
        f"import os\nos.unlink({str(victim)!r})\nos.rmdir({str(tmp_path)!r})",
        f"open({str(victim)!r}, 'w').write('gone')",
        f"import os\nos.rename({str(victim)!r}, 'mine.txt')",
    ):
        result = run_timed(sandbox, program, 3.0)
        assert result.status == "violation", result
        assert victim.read_text() == "keep me"
    inside = sandbox.run("open('scratch.txt', 'w').write('ok')\n" + GOOD, CASES, "f")
    assert inside.reward == 1.0  # the temp dir itself is writable


def test_lying_eq_does_not_pass_io_cases(sandbox):
    program = "class Yes:\n def __eq__(self, other):\n  return True\ndef f(x):\n return Yes()"
    assert sandbox.run(program, CASES, "f").reward == 0.0


def test_kernel_limits_hold_without_the_audit_hook(sandbox):
    # _thread needs no audited call; RLIMIT_NPROC=0 (as nobody, or any non-root user) stops it.
    program = "import _thread\n_thread.start_new_thread(print, ('hi',))\n" + GOOD
    result = sandbox.run(program, CASES, "f")
    if sandbox.ids is not None or os.geteuid() != 0:
        assert result.reward == 0.0 and "thread" in result.detail


def test_guarantees_report_the_active_layers(sandbox):
    guarantees = sandbox.guarantees
    assert guarantees["network"] in ("empty network namespace", "audit hook only")
    assert guarantees["user"] in ("nobody", "same user as the trainer")
    assert guarantees["limits"]["cpu_seconds"] == LIMITS.cpu_seconds


@pytest.mark.timeout(60)
def test_batch_runs_in_parallel_and_caches(sandbox):
    jobs = [(f"def f(x):\n return 2*x+{i % 2}", CASES, "f") for i in range(8)]
    results = sandbox.run_batch(jobs + jobs)
    assert [r.reward for r in results] == [0.0, 1.0] * 8
    start = time.monotonic()
    sandbox.run_batch(jobs)  # all cached
    assert time.monotonic() - start < 0.5


@pytest.mark.timeout(60)
def test_code_env_reports_the_cause_in_info():
    env = gym.make("llm_gym/Code-v0", granularity="sequence", task_kwargs={"cpu_seconds": 1, "wall_seconds": 3.0})
    env.reset(seed=0)
    start = time.monotonic()
    _, reward, terminated, _, info = env.step("x=9**9**9")  # CPU-bound, in the task's char vocabulary
    assert time.monotonic() - start < 8.0
    assert terminated and reward == 0.0 and info["gold_reward"] == 0.0
    components = info["reward_components"]
    assert components["code/timeout"] == 1.0 and components["code_tests"] == 0.0
    assert sum(v for k, v in components.items() if k.startswith("code/")) == 1.0


def test_code_reward_spec_needs_tests_in_metadata():
    reward = make_reward("code_tests", make_task("code"))
    with pytest.raises(KeyError, match="metadata 'tests'"):
        reward(["p"], [GOOD], [{}])


def test_unknown_entry_point_cases_need_an_entry_point(sandbox):
    with pytest.raises(ValueError, match="entry_point"):
        sandbox.run(GOOD, CASES, None)


def test_code_loader_reads_prompt_tests_and_humaneval_rows(tmp_path):
    path = tmp_path / "code.jsonl"
    rows = [
        {"prompt": "double x", "tests": ["assert f(2) == 4"], "solution": "def f(x):\n return 2*x"},
        {"prompt": "def add(a, b):\n", "test": "def check(c):\n assert c(1, 2) == 3", "entry_point": "add",
         "canonical_solution": " return a + b"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    task = make_task("code", data_files=str(path), test_fraction=0.0)
    samples = task.data.splits["train"]
    meta = [{**s.metadata, "reference": s.reference} for s in samples]
    gold = task.verify([s.prompt for s in samples], [s.reference for s in samples], meta)
    np.testing.assert_array_equal(gold, [1.0, 1.0])
    assert task.verify([samples[1].prompt], [" return a - b"], meta[1:])[0] == 0.0

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(rows[0]) + "\n" + json.dumps({"prompt": "x"}) + "\n")
    with pytest.raises(DatasetError, match=r"bad.jsonl line 2: row is missing field 'tests'"):
        make_task("code", data_files=str(bad))
