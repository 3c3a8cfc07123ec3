"""``benchmarks.start_spread``: the per-prompt success spread of a start policy, through its command line."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import torch

from benchmarks.start_spread import SpreadArguments, main, start_spread


def test_per_prompt_success_is_the_mean_of_each_prompts_samples(tiny_model_dir, monkeypatch):
    """A stand-in env whose gold is 1 for every sample of an even-seed prompt and, for an odd-seed prompt, for
    its first sample only: per-prompt success 1 and 1/4, so mean, spread and histogram are known exactly."""
    import benchmarks.start_spread as spread

    class Env:
        def __init__(self, env_id, num_envs, *args):
            self.num_envs = num_envs

        def rollout(self, model, seeds, temperature, top_k, generator):
            assert len(seeds) == self.num_envs == 24 and seeds[:5] == [0, 0, 0, 0, 1]  # a prompt's samples adjoin
            gold = [1.0 if s % 2 == 0 or i % 4 == 0 else 0.0 for i, s in enumerate(seeds)]
            return SimpleNamespace(gold=torch.tensor(gold))

        def close(self):
            pass

    monkeypatch.setattr(spread, "RolloutEnv", Env)
    out = start_spread(SpreadArguments(policy=str(tiny_model_dir), env_id="llm_gym/Arithmetic-v0", prompts=6,
                                       samples=4, seed=0))
    assert out["mean"] == 0.625 and out["std_over_prompts"] == 0.375
    assert out["share_never_solved"] == 0.0 and out["share_at_least_half"] == 0.5
    assert out["histogram"]["counts"] == [0, 0, 3, 0, 0, 0, 0, 3]  # 0.25 in [0.1, 0.3), 1.0 in the last bin


def test_the_command_line_prints_the_summary_as_json(tiny_model_dir, capsys):
    assert main(["--policy", str(tiny_model_dir), "--env_id", "llm_gym/Arithmetic-v0", "--prompts", "3",
                 "--samples", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["prompts"] == 3 and out["samples"] == 2 and np.isclose(sum(out["histogram"]["counts"]), 3)
