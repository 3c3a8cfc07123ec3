"""Per-token log-probabilities and entropies under the temperature the sampler used.

Why a module of its own: these functions are the hot path of every update (one
(batch x tokens x vocab) softmax each). ``head_logprobs`` is what the trainers use: it starts from
the last hidden states and the output layer's weight, and makes the logits a slice of tokens at a
time inside the function, forward and backward, so no (batch x tokens x vocab) tensor exists at
all — neither the logits nor their gradient. ``token_logprobs``/``entropy_from_logits`` start from
logits a model has already made (models whose forward changes the logits after the output layer). Written the obvious way (``log_softmax(logits.float() / T)``)
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
        for s in _token_slices(logits):  # d/dz log p_k = (onehot_k - p) / T, in place
            g = grad_out[..., s, None].float()
            chunk = torch.softmax(logits[..., s, :].float() * ctx.inv_t, -1).mul_(-g)
            grad[..., s, :] = chunk.scatter_add_(-1, tokens[..., s, None], g).mul_(ctx.inv_t)
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
        for s in _token_slices(logits):  # dH/dz_j = -p_j (log p_j + H) / T, in place
            logp = torch.log_softmax(logits[..., s, :].float() * ctx.inv_t, -1)
            scale = -grad_out[..., s, None].float() * ctx.inv_t
            p = logp.exp()
            grad[..., s, :] = p.mul_(logp.add_(entropy[..., s, None])).mul_(scale)
        return grad, None


def _compute_dtype(hidden: torch.Tensor, weight: torch.Tensor) -> torch.dtype:
    """The matmul dtype autocast would pick for ``hidden @ weight.T`` (backward reuses it)."""
    device = hidden.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return torch.promote_types(hidden.dtype, weight.dtype)


def _row_slices(rows: int, vocab: int):
    step = max(1, CHUNK_ELEMENTS // max(vocab, 1))
    for start in range(0, rows, step):
        yield slice(start, start + step)


class _HeadLogprobs(torch.autograd.Function):
    """log p(token) and the entropy from (N, H) hidden states and a (V, H) output layer, a chunk of rows at a time."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, tokens, inv_t: float, with_entropy: bool):
        dtype = _compute_dtype(hidden, weight)
        logp = torch.empty(tokens.shape, dtype=torch.float32, device=hidden.device)
        entropy = torch.empty(tokens.shape, dtype=torch.float32, device=hidden.device) if with_entropy else None
        w, b = weight.to(dtype), None if bias is None else bias.to(dtype)
        for s in _row_slices(len(tokens), len(weight)):
            z = torch.nn.functional.linear(hidden[s].to(dtype), w, b).float().mul_(inv_t)
            lse = torch.logsumexp(z, -1)
            logp[s] = z.gather(-1, tokens[s, None]).squeeze(-1) - lse
            if with_entropy:  # H = lse - sum_j p_j z_j
                entropy[s] = lse - torch.softmax(z, -1).mul_(z).sum(-1)
        ctx.save_for_backward(hidden, weight, bias, tokens, entropy)
        ctx.inv_t, ctx.dtype = inv_t, dtype
        ctx.set_materialize_grads(False)
        return logp, entropy

    @staticmethod
    def backward(ctx, grad_logp, grad_entropy):
        hidden, weight, bias, tokens, entropy = ctx.saved_tensors
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        grad_h = torch.zeros_like(hidden) if need_h else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
        grad_b = torch.zeros(weight.shape[0], dtype=torch.float32, device=weight.device) if need_b else None
        w, b = weight.to(ctx.dtype), None if bias is None else bias.to(ctx.dtype)
        # In place wherever a value is not needed again: at most two chunk-sized fp32 buffers are alive
        # (log p and p), where the written-out formulas keep five or six (z, log p, p, g and their products).
        for s in _row_slices(len(tokens), len(weight)):
            h = hidden[s].to(ctx.dtype)
            logp = torch.nn.functional.linear(h, w, b).float().mul_(ctx.inv_t).log_softmax(-1)
            if grad_entropy is not None:  # dH/dz_j = -p_j (log p_j + H)
                p = logp.exp()
                g = logp.add_(entropy[s, None]).mul_(p).mul_(-grad_entropy[s, None].float())
                if grad_logp is not None:  # d log p_k / dz = onehot_k - p
                    g.sub_(p.mul_(grad_logp[s, None].float()))
                del p
            elif grad_logp is not None:
                g = logp.exp_().mul_(-grad_logp[s, None].float())
            else:
                g = logp.zero_()
            if grad_logp is not None:
                g.scatter_add_(-1, tokens[s, None], grad_logp[s, None].float())
            g.mul_(ctx.inv_t)  # fp32; the input gradient's product runs in the forward's dtype
            if need_h:
                grad_h[s] = (g.to(ctx.dtype) @ w).to(hidden.dtype)
            if need_w:
                grad_w.addmm_(g.t(), h.float())
            if need_b:
                grad_b += g.sum(0)
        return (grad_h, None if grad_w is None else grad_w.to(weight.dtype),
                None if grad_b is None else grad_b.to(bias.dtype), None, None, None)


def head_logprobs(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, tokens: torch.Tensor,
                  temperature: float, entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token log p(token) and (with ``entropy``) the entropy of ``softmax((hidden @ weight.T + bias) / T)``.

    ``hidden`` is (..., H), ``tokens`` (...), ``weight`` the output layer's (V, H). Both outputs are
    fp32 and differentiable with respect to ``hidden``, ``weight`` and ``bias``; the largest temporary
    is one chunk of ``CHUNK_ELEMENTS`` logits. ``temperature == 0`` counts as 1.
    """
    shape = tokens.shape
    logp, ent = _HeadLogprobs.apply(hidden.reshape(-1, hidden.shape[-1]), weight, bias, tokens.reshape(-1),
                                    _inverse_temperature(temperature), entropy)
    return logp.view(shape), None if ent is None else ent.view(shape)


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float) -> torch.Tensor:
    """log p(token) under ``softmax(logits / temperature)`` (fp32, shape of ``tokens``); ``temperature == 0``
    counts as 1. ``logits`` is (..., T, V), ``tokens`` (..., T)."""
    return _TokenLogprobs.apply(logits, tokens, _inverse_temperature(temperature))


def entropy_from_logits(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per-token entropy (fp32) of the temperature-scaled distribution."""
    return _Entropy.apply(logits, _inverse_temperature(temperature))
