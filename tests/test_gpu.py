"""The GPU path: bf16 on CUDA through load_causal_lm, SFT, reward model, PPO and GRPO (marked gpu; skipped
without CUDA), and the device/dtype options' errors on any machine."""

from __future__ import annotations

import json
import math

import pytest
import torch
from chat_tokenizers import save_family
from rl_helpers import model_forwards

import llm_gym  # noqa: F401  (registers env ids)
from llm_gym.models import load_causal_lm, resolve_device, resolve_dtype
from llm_gym.tasks import make_task

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_device_and_dtype_options_name_what_is_wrong(tiny_model_dir):
    assert resolve_dtype("bfloat16") is torch.bfloat16 and resolve_dtype("auto") == "auto"
    with pytest.raises(ValueError, match=r"dtype must be one of \['bfloat16', 'float16', 'float32'\] or 'auto', got 'bf16'"):
        load_causal_lm(tiny_model_dir, dtype="bf16")
    model, _ = load_causal_lm(tiny_model_dir, device="auto", dtype="bfloat16")
    assert next(model.parameters()).dtype is torch.bfloat16
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"device 'cuda' requested but CUDA is not available"):
            resolve_device("cuda")


@pytest.mark.gpu
@needs_cuda
def test_bf16_sampling_on_cuda(tiny_model_dir):
    from agents.supervised.data import generate_completions

    model, tokenizer = load_causal_lm(tiny_model_dir, device="cuda", dtype="bfloat16")
    assert next(model.parameters()).device.type == "cuda"
    completions = generate_completions(model, tokenizer, ["12+34="] * 8, max_new_tokens=6, temperature=1.0,
                                       generator=torch.Generator("cuda").manual_seed(0))
    assert len(completions) == 8


@pytest.mark.gpu
@needs_cuda
def test_sft_reward_model_ppo_grpo_in_bf16_on_cuda(tmp_path, fresh_accelerate_state):
    from agents.rl.grpo import GRPO, GRPOConfig
    from agents.rl.ppo import PPO, PPOConfig
    from agents.supervised.reward_training import RewardModelConfig, train_reward_model
    from agents.supervised.sft import SFTConfig, train_sft

    samples = make_task("arithmetic").dataset("train", 64, seed=0)
    model_dir = save_family(tmp_path / "qwen", "qwen", [s.prompt + s.reference for s in samples] + ["user assistant"])
    data = tmp_path / "chat.jsonl"
    data.write_text("".join(json.dumps({"messages": [{"role": "user", "content": s.prompt},
                                                     {"role": "assistant", "content": s.reference}]}) + "\n"
                            for s in samples))
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": s.prompt, "chosen": s.reference, "rejected": s.reference + "0"}) + "\n"
                             for s in samples))
    with model_forwards("cuda") as sft_forwards:
        sft = train_sft(SFTConfig(model_name_or_path=str(model_dir), output_dir=str(tmp_path / "sft"), data=str(data),
                                  max_steps=4, batch_size=8, eval_size=8, eval_every=0, max_length=48,
                                  mixed_precision="bf16"))
    assert math.isfinite(sft.final["eval/loss"])
    with model_forwards("cuda") as rm_forwards:
        rm = train_reward_model(RewardModelConfig(data=str(pairs), output_dir=str(tmp_path / "rm"),
                                                  model_name_or_path=str(sft.output_dir), max_steps=4, batch_size=8,
                                                  eval_every=0, eval_fraction=0.3, mixed_precision="bf16"))
    assert math.isfinite(rm.final["eval/loss"])
    for seen in (sft_forwards, rm_forwards):  # every training forward in bf16 autocast over fp32 weights
        training = [row for row in seen if row[3]]
        assert training and all(row[:3] == (True, torch.bfloat16, torch.float32) for row in training), set(seen)
    env_kwargs = {"data_files": str(data), "reward": f"learned:path={rm.output_dir},device=cuda", "max_new_tokens": 4}
    torch.cuda.reset_peak_memory_stats()
    ppo = PPO(PPOConfig(model_name_or_path=str(sft.output_dir), batch_size=8, num_mini_batches=2, num_ppo_epochs=1,
                        save_steps=0, eval_episodes=8, device="cuda", mixed_precision="bf16"))
    grpo = GRPO(GRPOConfig(model_name_or_path=str(sft.output_dir), batch_size=8, num_generations=2,
                           num_mini_batches=2, save_steps=0, eval_episodes=8, device="cuda", mixed_precision="bf16"))
    for algo, trainer in (("ppo", ppo), ("grpo", grpo)):
        with model_forwards("cuda") as seen:  # sampling, training, reference and evaluation forwards alike
            result = trainer.train("llm_gym/Dataset-v0", 16, 0, tmp_path / algo, env_kwargs)
        assert all(math.isfinite(v) for k, v in result.curve[-1].items() if k != "objective/gold_reward")
        assert any(row[3] for row in seen) and all(row[:3] == (True, torch.bfloat16, torch.float32) for row in seen), algo
    assert torch.cuda.max_memory_allocated() > 0  # the work ran on the GPU
