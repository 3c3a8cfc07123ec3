"""The RL trainers' ``mixed_precision``: the same option, choices and meaning as the supervised trainers'.

Forwards (sampling, training, reference, evaluation) run under autocast in the resolved dtype while the
weights stay fp32; ``auto`` is no autocast on the CPU, so CPU runs exercise bf16 only when asked.
"""

from __future__ import annotations

import math

import pytest
import torch
from rl_helpers import model_forwards, sft_dir  # noqa: F401  (fixture)
from transformers import AutoModelForCausalLM

from agents import metrics as M
from agents.rl.grpo import GRPO, GRPOConfig
from agents.rl.policy import autocast
from agents.rl.ppo import PPO, PPOConfig
from agents.supervised.training import TrainingArguments
from llm_gym.models import resolve_mixed_precision

ENV = "llm_gym/Arithmetic-v0"
TRAINERS = {
    "grpo": lambda d, p: GRPO(GRPOConfig(model_name_or_path=str(d), batch_size=8, num_generations=2, eval_episodes=4,
                                         save_steps=0, device="cpu", mixed_precision=p)),
    "ppo": lambda d, p: PPO(PPOConfig(model_name_or_path=str(d), batch_size=8, num_mini_batches=2, eval_episodes=4,
                                      save_steps=0, device="cpu", mixed_precision=p)),
}


def test_rl_and_supervised_configs_share_the_option():
    rl, sl = GRPOConfig.__dataclass_fields__["mixed_precision"], TrainingArguments.__dataclass_fields__["mixed_precision"]
    assert (rl.type, rl.default, rl.metadata["help"]) == (sl.type, sl.default, sl.metadata["help"])


def test_auto_is_no_autocast_on_the_cpu_and_bad_choices_are_refused():
    assert resolve_mixed_precision("auto", "cpu") == "no"
    assert resolve_mixed_precision("bf16", "cpu") == "bf16"  # an explicit choice holds on any device
    with autocast(torch.device("cpu"), resolve_mixed_precision("auto", "cpu")):
        assert not torch.is_autocast_enabled("cpu")
    with pytest.raises(ValueError, match="mixed_precision must be 'auto', 'no', 'bf16' or 'fp16', got 'bfloat16'"):
        resolve_mixed_precision("bfloat16", "cpu")
    with pytest.raises(ValueError, match="mixed_precision 'fp16' needs CUDA .*got device 'cpu'; use 'bf16' or 'no'"):
        resolve_mixed_precision("fp16", "cpu")


@pytest.mark.parametrize("algo,precision", [("grpo", "bf16"), ("ppo", "bf16"), ("grpo", "no")])
def test_rl_forwards_run_in_the_chosen_precision_with_fp32_weights(algo, precision, sft_dir, tmp_path,
                                                                    fresh_accelerate_state):
    with model_forwards("cpu") as seen:
        result = TRAINERS[algo](sft_dir, precision).train(ENV, 8, 0, tmp_path)
    assert len(result.curve) == 1 and math.isfinite(result.curve[0][M.POLICY_LOSS])
    assert any(grad for *_, grad in seen)  # the training forwards were seen, not only sampling
    bf16 = precision == "bf16"
    assert all(on == bf16 and weights == torch.float32 for on, _, weights, _ in seen), set(seen)
    if bf16:
        assert all(dtype == torch.bfloat16 for _, dtype, _, _ in seen)
    assert next(AutoModelForCausalLM.from_pretrained(result.checkpoint_dir).parameters()).dtype == torch.float32


def test_resuming_with_another_mixed_precision_is_refused(sft_dir, tmp_path, fresh_accelerate_state):
    TRAINERS["grpo"](sft_dir, "no").train(ENV, 8, 0, tmp_path)
    with pytest.raises(ValueError, match="holds a run with a different mixed_precision: 'no' there, 'bf16' now"):
        TRAINERS["grpo"](sft_dir, "bf16").train(ENV, 16, 0, tmp_path)
