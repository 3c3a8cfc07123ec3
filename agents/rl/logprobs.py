"""Per-token log-probabilities and entropies from logits, under the temperature the sampler used.

Why a module of its own: these two functions are the hot path of every update (one
(batch x tokens x vocab) softmax each). Written the obvious way (``log_softmax(logits.float() / T)``)
autograd keeps several full-size fp32 copies of the logits alive: the upcast, the scaled logits, the
log-softmax and, for the entropy, the probabilities and their product. With a 150k-token vocabulary
and 512-token completions that is gigabytes per micro-batch. Here each is an autograd function that
saves only the logits it was given, works through them a slice of tokens at a time (so the fp32
temporaries are one slice, never the whole batch) and recomputes the softmax of that slice in
backward. The values equal the unchunked formulas to float rounding.
"""

from __future__ import annotations

import torch

CHUNK_ELEMENTS = 1 << 24  # logits entries (64 MiB in fp32) handled at once: the largest temporary


def _inverse_temperature(temperature: float) -> float:
    return 1.0 / temperature if temperature > 0 else 1.0


def _token_slices(logits: torch.Tensor):
    """Slices over the token dimension (-2) of (..., T, V) logits, each about ``CHUNK_ELEMENTS`` entries."""
    per_token = logits[..., 0, :].numel()
    step = max(1, CHUNK_ELEMENTS // max(per_token, 1))
    for start in range(0, logits.shape[-2], step):
        yield slice(start, start + step)


class _TokenLogprobs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: torch.Tensor, tokens: torch.Tensor, inv_t: float) -> torch.Tensor:
        out = torch.empty(tokens.shape, dtype=torch.float32, device=logits.device)
        for s in _token_slices(logits):
            scaled = logits[..., s, :].float() * inv_t
            picked = scaled.gather(-1, tokens[..., s, None]).squeeze(-1)
            out[..., s] = picked - torch.logsumexp(scaled, -1)
        ctx.save_for_backward(logits, tokens)
        ctx.inv_t = inv_t
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        logits, tokens = ctx.saved_tensors
        grad = torch.empty_like(logits)
        for s in _token_slices(logits):  # d/dz log p_k = (onehot_k - p) / T
            probs = torch.softmax(logits[..., s, :].float() * ctx.inv_t, -1)
            g = grad_out[..., s, None].float()
            chunk = (probs * -g).scatter_add_(-1, tokens[..., s, None], g)
            grad[..., s, :] = chunk * ctx.inv_t
        return grad, None, None


class _Entropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: torch.Tensor, inv_t: float) -> torch.Tensor:
        out = torch.empty(logits.shape[:-1], dtype=torch.float32, device=logits.device)
        for s in _token_slices(logits):
            logp = torch.log_softmax(logits[..., s, :].float() * inv_t, -1)
            out[..., s] = -(logp.exp() * logp).sum(-1)
        ctx.save_for_backward(logits, out)
        ctx.inv_t = inv_t
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        logits, entropy = ctx.saved_tensors
        grad = torch.empty_like(logits)
        for s in _token_slices(logits):  # dH/dz_j = -p_j (log p_j + H) / T
            logp = torch.log_softmax(logits[..., s, :].float() * ctx.inv_t, -1)
            chunk = logp.exp() * (logp + entropy[..., s, None]) * (-grad_out[..., s, None].float() * ctx.inv_t)
            grad[..., s, :] = chunk
        return grad, None


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float) -> torch.Tensor:
    """log p(token) under ``softmax(logits / temperature)`` (fp32, shape of ``tokens``); ``temperature == 0``
    counts as 1. ``logits`` is (..., T, V), ``tokens`` (..., T)."""
    return _TokenLogprobs.apply(logits, tokens, _inverse_temperature(temperature))


def entropy_from_logits(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per-token entropy (fp32) of the temperature-scaled distribution."""
    return _Entropy.apply(logits, _inverse_temperature(temperature))
