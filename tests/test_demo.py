"""The end-to-end demo: PPO on a *learned* reward model raises the *gold* reward."""

from __future__ import annotations

import json

from rich.console import Console

from benchmarks.demo import DemoConfig, run_demo


def test_demo_pipeline_raises_gold_reward_with_a_learned_reward_model(tmp_path):
    """Count task: SFT (~38%) -> simulated feedback -> Bradley-Terry RM (~63%) -> PPO (kl_coef 0.2).

    Measured gold on 512 held-out episodes, SFT -> PPO, seeds 0/1/2: 0.307 -> 0.361, 0.281 -> 0.338,
    0.279 -> 0.338 (gains +0.054..+0.059); PPO with a constant reward instead leaves gold at 0.307
    (KL 0.004), so the gain comes from the learned reward. The margin (+0.03) sits below the smallest
    measured gain. About 1 minute on 2 idle cores.
    """
    rows = run_demo(DemoConfig(output_dir=str(tmp_path / "demo")), Console(quiet=True))
    sft, ppo = rows["SFT start"], rows["PPO"]
    assert ppo["objective/gold_reward"] > sft["objective/gold_reward"] + 0.03
    assert ppo["objective/reward"] > sft["objective/reward"]  # the proxy it optimised rose too
    assert 0 < ppo["objective/kl"] < 2.0  # held by the KL leash
    summary = json.loads((tmp_path / "demo" / "demo_summary.json").read_text())
    assert summary["results"]["PPO"]["objective/gold_reward"] == ppo["objective/gold_reward"]
    assert (tmp_path / "demo" / "demo_curves.png").stat().st_size > 10_000
