"""The KV-cache sampler: same tokens as HF generate, exact log-probs, EOS handling, one forward per token."""

from __future__ import annotations

import gymnasium
import pytest
import torch
from rl_helpers import sft_dir  # noqa: F401  (fixture)

import llm_gym  # noqa: F401
from agents.rl.logprobs import token_logprobs
from agents.rl.policy import sequence_forward
from agents.rl.sampling import filter_top_k, sample_completions
from llm_gym.models import load_causal_lm


def env_prompts(model_dir, n=16, seed=0):
    """Prompts exactly as the sequence-level vector env lays them out (left-padded into [0, P))."""
    env = gymnasium.make_vec("llm_gym/Arithmetic-v0", num_envs=n, vectorization_mode="vector_entry_point",
                             granularity="sequence", tokenizer=str(model_dir))
    obs, _ = env.reset(seed=seed)
    T = env.single_action_space.shape[0]
    P = obs["input_ids"].shape[1] - T
    return obs["input_ids"][:, :P], obs["attention_mask"][:, :P], T


def test_greedy_matches_hf_generate_on_left_padded_prompts(sft_dir):
    model, tok = load_causal_lm(sft_dir)
    ids, mask, T = env_prompts(sft_dir)
    assert (mask[:, 0] == 0).any(), "the batch should contain left-padded rows"
    ours = sample_completions(model, ids, mask, T, tok.eos_token_id, tok.pad_token_id, temperature=0.0)
    hf = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=T, do_sample=False,
                        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)[:, ids.shape[1]:]
    width = ours.ids.shape[1]
    assert torch.equal(ours.ids, hf[:, :width])
    assert (hf[:, width:] == tok.pad_token_id).all()


def test_logprobs_equal_full_forward_and_rows_stop_at_eos(sft_dir):
    model, tok = load_causal_lm(sft_dir)
    ids, mask, T = env_prompts(sft_dir, n=32)
    gen = torch.Generator().manual_seed(0)
    out = sample_completions(model, ids, mask, T, tok.eos_token_id, tok.pad_token_id, temperature=0.7, generator=gen)
    forward, P = sequence_forward(model, ids, mask, out.ids, out.mask)
    full = token_logprobs(forward.logits[:, P - 1 : P - 1 + out.ids.shape[1]], out.ids, 0.7) * out.mask
    torch.testing.assert_close(out.logprobs, full, atol=1e-4, rtol=1e-4)
    for row, length, ended in zip(out.ids, out.lengths, out.ended):
        if ended:
            assert row[length - 1] == tok.eos_token_id and (row[:length - 1] != tok.eos_token_id).all()
            assert (row[length:] == tok.pad_token_id).all()
        else:
            assert length == T
    assert out.ended.any()
    assert (out.logprobs[out.mask == 0] == 0).all()


def test_one_forward_per_new_token_for_the_whole_batch(sft_dir):
    model, tok = load_causal_lm(sft_dir)
    ids, mask, T = env_prompts(sft_dir, n=64)
    calls = []
    handle = model.register_forward_hook(lambda m, args, kwargs_out: calls.append(1))
    out = sample_completions(model, ids, mask, T, tok.eos_token_id, tok.pad_token_id, temperature=1.0,
                             generator=torch.Generator().manual_seed(1))
    handle.remove()
    assert len(calls) == out.ids.shape[1]  # prefill + one per later token, never per row


def test_sampling_is_seeded_and_top_k_one_is_greedy(sft_dir):
    model, tok = load_causal_lm(sft_dir)
    ids, mask, T = env_prompts(sft_dir)
    args = (model, ids, mask, T, tok.eos_token_id, tok.pad_token_id)
    a = sample_completions(*args, temperature=1.0, generator=torch.Generator().manual_seed(3))
    b = sample_completions(*args, temperature=1.0, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.ids, b.ids)
    greedy = sample_completions(*args, temperature=0.0)
    top1 = sample_completions(*args, temperature=1.0, top_k=1, generator=torch.Generator().manual_seed(4))
    assert torch.equal(greedy.ids, top1.ids)
    logits = torch.tensor([[1.0, 3.0, 2.0, 0.0]])
    assert torch.isinf(filter_top_k(logits, 2)).tolist() == [[True, False, False, True]]


def test_negative_temperature_is_an_error(sft_dir):
    model, tok = load_causal_lm(sft_dir)
    ids, mask, T = env_prompts(sft_dir, n=2)
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        sample_completions(model, ids, mask, T, tok.eos_token_id, tok.pad_token_id, temperature=-1.0)
