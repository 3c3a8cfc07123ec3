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


def _chunk_buffer(rows: int, vocab: int, device: torch.device) -> torch.Tensor:
    """One fp32 buffer for a chunk of logits, written by every chunk of a call in turn.

    Why one buffer and not a fresh tensor per operation: a chunk is tens of MiB, and the C allocator
    hands out blocks that large with ``mmap`` and returns them on free, so every fresh one is paid for
    again in page faults. On a 2-core AMD EPYC with a 151,936-token vocabulary that doubled the time of
    an ``exp`` over a chunk (86 ms fresh, 27 ms into a buffer) and of the whole log-prob forward."""
    return torch.empty(min(rows, max(1, CHUNK_ELEMENTS // max(vocab, 1))), vocab, dtype=torch.float32, device=device)


def _scaled_logits(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, inv_t: float,
                   out: torch.Tensor) -> torch.Tensor:
    """``(hidden @ weight.T + bias) * inv_t`` in fp32, written into ``out`` (a view of a chunk buffer)."""
    if hidden.dtype == torch.float32 and weight.dtype == torch.float32:
        if bias is None:
            torch.mm(hidden, weight.t(), out=out)
        else:
            torch.addmm(bias.float(), hidden, weight.t(), out=out)
    else:  # the lower-precision product autocast would make, upcast into the buffer
        out.copy_(torch.nn.functional.linear(hidden, weight, bias))
    return out.mul_(inv_t) if inv_t != 1.0 else out


class _HeadLogprobs(torch.autograd.Function):
    """log p(token) and the entropy from (N, H) hidden states and a (V, H) output layer, a chunk of rows at a time.

    Forward and backward each work in at most two chunk-sized fp32 buffers, allocated once per call and
    overwritten in place; forward keeps each row's log-sum-exp, so backward makes log p with one
    subtraction instead of a second log-softmax."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, tokens, inv_t: float, with_entropy: bool):
        dtype = _compute_dtype(hidden, weight)
        n, vocab = len(tokens), len(weight)
        logp = torch.empty(tokens.shape, dtype=torch.float32, device=hidden.device)
        lse = torch.empty_like(logp)
        entropy = torch.empty_like(logp) if with_entropy else None
        w, b = weight.to(dtype), None if bias is None else bias.to(dtype)
        z_buffer = _chunk_buffer(n, vocab, hidden.device)
        e_buffer = torch.empty_like(z_buffer) if with_entropy else None
        for s in _row_slices(n, vocab):
            z = _scaled_logits(hidden[s].to(dtype), w, b, inv_t, z_buffer[: len(tokens[s])])
            top = z.amax(-1, keepdim=True)
            picked = z.gather(-1, tokens[s, None]).squeeze(-1)
            z.sub_(top)  # z - max: every exp below is at most 1
            if with_entropy:  # H = log S - sum_j e_j (z_j - max) / S, with e = exp(z - max) and S its sum
                e = torch.exp(z, out=e_buffer[: len(z)])
                total = e.sum(-1)
                entropy[s] = total.log() - e.mul_(z).sum(-1) / total
            else:
                total = z.exp_().sum(-1)
            lse[s] = total.log_() + top.squeeze(-1)
            logp[s] = picked - lse[s]
        ctx.save_for_backward(hidden, weight, bias, tokens, lse, entropy)
        ctx.inv_t, ctx.dtype = inv_t, dtype
        ctx.set_materialize_grads(False)
        return logp, entropy

    @staticmethod
    def backward(ctx, grad_logp, grad_entropy):
        hidden, weight, bias, tokens, lse, entropy = ctx.saved_tensors
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        n, vocab = len(tokens), len(weight)
        grad_h = torch.zeros_like(hidden) if need_h else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
        grad_b = torch.zeros(weight.shape[0], dtype=torch.float32, device=weight.device) if need_b else None
        w, b = weight.to(ctx.dtype), None if bias is None else bias.to(ctx.dtype)
        logp_buffer = _chunk_buffer(n, vocab, hidden.device)
        p_buffer = torch.empty_like(logp_buffer) if grad_entropy is not None else None
        for s in _row_slices(n, vocab):
            h = hidden[s].to(ctx.dtype)
            logp = _scaled_logits(h, w, b, ctx.inv_t, logp_buffer[: len(h)]).sub_(lse[s, None])
            if grad_entropy is not None:  # dH/dz_j = -p_j (log p_j + H)
                p = torch.exp(logp, out=p_buffer[: len(h)])
                g = logp.add_(entropy[s, None]).mul_(p).mul_(-grad_entropy[s, None].float())
                if grad_logp is not None:  # d log p_k / dz = onehot_k - p
                    g.sub_(p.mul_(grad_logp[s, None].float()))
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
