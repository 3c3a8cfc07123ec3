"""Chunked log-probs and entropies: equal to the unchunked formulas (values and gradients, 1e-5), and they keep
no full-size fp32 copy of the logits for backward; the fused GELU swap leaves a model's outputs unchanged."""

from __future__ import annotations

import pytest
import torch
from rl_helpers import sft_dir  # noqa: F401  (fixture)

import agents.rl.logprobs as logprobs_module
from agents.rl.kernels import fuse_activations
from agents.rl.logprobs import entropy_from_logits, token_logprobs
from llm_gym.models import load_causal_lm


def reference_logprobs(logits, tokens, temperature):
    scaled = logits.float() / (temperature if temperature > 0 else 1.0)
    return torch.log_softmax(scaled, -1).gather(-1, tokens[..., None]).squeeze(-1)


def reference_entropy(logits, temperature):
    logp = torch.log_softmax(logits.float() / (temperature if temperature > 0 else 1.0), -1)
    return -(logp.exp() * logp).sum(-1)


@pytest.mark.parametrize("temperature", [1.0, 0.7, 0.0])
@pytest.mark.parametrize("chunk_tokens", [1, 7, 1000])
def test_chunked_values_and_gradients_equal_the_unchunked_formulas(monkeypatch, temperature, chunk_tokens):
    """A strided slice of the logits (as the trainers pass them), several chunk sizes (one token, uneven, whole)."""
    B, T, V = 3, 20, 50
    monkeypatch.setattr(logprobs_module, "CHUNK_ELEMENTS", B * V * chunk_tokens)
    gen = torch.Generator().manual_seed(0)
    full = (3 * torch.randn(B, T + 4, V, generator=gen)).requires_grad_(True)
    tokens = torch.randint(0, V, (B, T), generator=gen)
    weights = torch.randn(2, B, T, generator=gen)

    def loss_and_grad(lp_fn, ent_fn):
        full.grad = None
        logits = full[:, 3 : 3 + T]
        lp, ent = lp_fn(logits, tokens, temperature), ent_fn(logits, temperature)
        (weights[0] * lp + weights[1] * ent).sum().backward()
        return lp.detach(), ent.detach(), full.grad.clone()

    ours = loss_and_grad(token_logprobs, entropy_from_logits)
    ref = loss_and_grad(reference_logprobs, reference_entropy)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_no_full_size_fp32_copy_is_saved_for_backward():
    """Autograd keeps only the logits themselves (and per-token outputs): with bf16 logits, nothing of
    (B, T, V) fp32 size is saved, where log_softmax(logits.float()) would save two such buffers."""
    B, T, V = 2, 16, 1000
    logits = torch.randn(B, T, V).bfloat16().requires_grad_(True)
    tokens = torch.randint(0, V, (B, T))
    saved: list[torch.Tensor] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        (token_logprobs(logits, tokens, 0.8).sum() + entropy_from_logits(logits, 0.8).sum()).backward()
    big = [t for t in saved if t.numel() >= B * T * V]
    assert big and all(t.dtype == torch.bfloat16 for t in big), [(t.dtype, t.shape) for t in saved]
    assert logits.grad.dtype == torch.bfloat16


def test_fused_activations_change_speed_not_outputs(sft_dir):
    model, _ = load_causal_lm(sft_dir)
    ids = torch.randint(3, len(model.get_input_embeddings().weight), (4, 12), generator=torch.Generator().manual_seed(0))
    before = model(input_ids=ids).logits
    assert fuse_activations(model) == model.config.n_layer
    torch.testing.assert_close(model(input_ids=ids).logits, before, atol=1e-5, rtol=1e-5)
    assert fuse_activations(model) == 0  # idempotent


@pytest.mark.gpu
def test_chunked_logprobs_on_cuda_bf16_match_fp32():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    gen = torch.Generator("cuda").manual_seed(0)
    logits = torch.randn(4, 64, 32_000, device="cuda", generator=gen)
    tokens = torch.randint(0, 32_000, (4, 64), device="cuda", generator=gen)
    half = logits.bfloat16()
    torch.testing.assert_close(token_logprobs(half, tokens, 1.0), reference_logprobs(half, tokens, 1.0), atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(entropy_from_logits(half, 1.0), reference_entropy(half, 1.0), atol=1e-4, rtol=1e-5)
