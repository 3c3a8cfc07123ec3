"""Runs behave like real training: an interrupted run resumes exactly, the CLI, two processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rl_helpers import sft_dir  # noqa: F401  (fixture)
from safetensors.torch import load_file

from agents.rl.registry import make_algorithm
from llm_gym.cli import main as llm_gym_main
from llm_gym.tasks import make_task

ENV = "llm_gym/Arithmetic-v0"
VERIFY = make_task("arithmetic").verify


def make_agent(algo: str, policy_dir: Path):
    options = {"model_name_or_path": str(policy_dir), "batch_size": 16, "num_mini_batches": 2, "num_ppo_epochs": 2,
               "eval_episodes": 16, "save_steps": 1}
    if algo == "ppo":
        options["kl_target"] = 0.5  # the adaptive KL controller's state must resume too
    return make_algorithm(algo, **options)


def verifier(crash_on_call: int | None = None):
    """The task verifier as the reward; raises KeyboardInterrupt on call ``crash_on_call`` (a kill mid-run).
    Both versions are the same function by name, as a resumed run's env_kwargs must be."""
    calls = []

    def reward(prompts, completions, metadata):
        calls.append(1)
        if len(calls) == crash_on_call:
            raise KeyboardInterrupt
        return VERIFY(prompts, completions, metadata)

    return reward


def timing_free(curve):
    return [{k: v for k, v in row.items() if not k.startswith("perf/")} for row in curve]


@pytest.mark.parametrize("algo", ["ppo", "grpo", "reinforce", "rloo", "dapo", "gspo", "reinforce++"])
def test_interrupted_run_resumes_to_the_same_metrics(algo, sft_dir, tmp_path):
    full = make_agent(algo, sft_dir).train(ENV, 64, 0, tmp_path / "full", {"reward": verifier()})
    with pytest.raises(KeyboardInterrupt):  # the third rollout: after the iteration-2 checkpoint
        make_agent(algo, sft_dir).train(ENV, 64, 0, tmp_path / "cut", {"reward": verifier(crash_on_call=3)})
    assert len((tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()) == 2
    resumed = make_agent(algo, sft_dir).train(ENV, 64, 0, tmp_path / "cut", {"reward": verifier()})

    assert len(resumed.curve) == 4
    assert timing_free(resumed.curve) == timing_free(full.curve)  # exactly, not approximately
    lines = [json.loads(line) for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert timing_free(lines) == timing_free(full.curve)
    a, b = load_file(full.checkpoint_dir / "model.safetensors"), load_file(resumed.checkpoint_dir / "model.safetensors")
    assert all((a[k] == b[k]).all() for k in a)
    assert resumed.final == full.final


def test_cli_trains_saves_config_and_resumes(sft_dir, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["rloo", "--env-id", ENV, "--output-dir", str(out), "--model-name-or-path", str(sft_dir),
            "--batch-size", "8", "--num-generations", "2", "--eval-episodes", "8",
            "--save-steps", "1", "--env-kwargs", "{reward: exact_match}"]
    assert llm_gym_main([*args, "--budget", "8"]) == 0
    config = (out / "config.yaml").read_text()
    assert "num_generations: 2" in config and "batch_size: 8" in config
    first = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert llm_gym_main([*args, "--budget", "24"]) == 0  # same folder, larger budget: continues
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [8, 16, 24] and rows[0] == first[0]
    with pytest.raises(SystemExit) as exit_info:  # a PPO option: rloo does not list it
        llm_gym_main([*args, "--budget", "8", "--vf-coef", "2"])
    assert exit_info.value.code == 2
    assert "llm-gym rloo: error: unrecognized arguments: --vf-coef 2" in capsys.readouterr().err


@pytest.mark.parametrize("algo", ["grpo", "best-of-n"])
def test_a_run_that_fails_to_start_leaves_no_record_that_refuses_the_corrected_run(algo, sft_dir, tmp_path):
    out = tmp_path / "run"
    settings = {"batch_size": 4, "num_generations": 2, "eval_episodes": 2}
    with pytest.raises(FileNotFoundError, match="directory not found"):
        make_algorithm(algo, model_name_or_path=str(tmp_path / "typo"), **settings).train(
            "llm_gym/Arithmetic-v0", 4, 0, out)
    assert not (out / "run_record.json").exists()
    result = make_algorithm(algo, model_name_or_path=str(sft_dir), **settings).train("llm_gym/Arithmetic-v0", 4, 0, out)
    assert (out / "run_record.json").is_file() and result.final


def test_the_setup_tells_in_memory_rows_and_reward_functions_apart_by_content():
    """A run resumed with other rows, or another function under the same name, is another setup; the same
    content built again is the same setup."""
    import datasets
    from agents.rl.config import RLConfig
    from agents.rl.run import setup_of

    def setup(rows, reward):
        return setup_of("grpo", RLConfig(), "llm_gym/Dataset-v0",
                        {"data_files": datasets.Dataset.from_list(rows), "reward": reward}, 0)

    def accuracy(completions, answer, **kwargs):
        return [float(c == a) for c, a in zip(completions, answer)]

    same = accuracy

    def accuracy(completions, answer, **kwargs):  # noqa: F811  (same name, other code)
        return [float(c.strip() == a) for c, a in zip(completions, answer)]

    rows = [{"prompt": "1+1=", "completion": "2"}]
    assert setup(rows, same) == setup(list(rows), same)
    assert setup(rows, same) != setup([{"prompt": "1+1=", "completion": "3"}], same)
    assert setup(rows, same) != setup(rows, accuracy)


def test_two_processes_under_torchrun(sft_dir, tmp_path):
    """accelerate picks up the torchrun process group (gloo on CPU); each process samples its own prompts."""
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "agents.train_cli", "ppo", "--env-id", ENV, "--budget", "32", "--output-dir", str(out),
           "--model-name-or-path", str(sft_dir), "--batch-size", "8", "--num-mini-batches", "2", "--num-ppo-epochs", "1",
           "--eval-episodes", "8", "--save-steps", "1"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [16, 32]  # 8 per process x 2 processes per iteration
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-00000001", "step-00000002"]
    assert json.loads((out / "final.json").read_text())["episode/length"] > 0


def test_cli_dispatches_sb3_ppo_to_the_sb3_adapter(tmp_path):
    pytest.importorskip("agents.rl.sb3")
    out = tmp_path / "sb3"
    assert llm_gym_main(["sb3-ppo", "--budget", "16", "--output-dir", str(out), "--num-envs", "4",
                         "--n-steps", "8", "--batch-size", "16", "--eval-episodes", "8", "--log-every", "8",
                         "--env-kwargs", "{reward: exact_match}"]) == 0
    assert (out / "policy").is_dir()


def test_cli_watches_on_policy_runs_with_the_reward_monitor(sft_dir, tmp_path):
    """`--ensemble` specs are scored on every iteration's batch; the stop rule ends the run early."""
    out = tmp_path / "watched"
    assert llm_gym_main(["grpo", "--env_id", ENV, "--output_dir", str(out), "--model_name_or_path", str(sft_dir),
                         "--batch_size", "8", "--num_generations", "2", "--eval_episodes", "8", "--save_steps", "0",
                         "--budget", "16", "--ensemble", "exact_match", "chrf", "--stop_rule", "alert"]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    for row in rows:
        assert {"objective/proxy_gold_gap", "objective/ensemble_std", "objective/ensemble_lower_bound",
                "objective/hacking_alarm"} <= set(row)
        assert 0.0 <= row["objective/ensemble_std"] <= 0.5  # two members scoring in [0, 1]
