"""Per-token log-probabilities and entropies under the temperature the sampler used.

Why a module of its own: these functions are the hot path of every update (one
(batch x tokens x vocab) softmax each). ``head_logprobs`` is what the trainers use: it starts from
the last hidden states and the output layer's weight, and makes the logits a slice of tokens at a
time inside the function, forward and backward, so no (batch x tokens x vocab) tensor exists at
all — neither the logits nor their gradient. ``logits_logprobs`` starts from logits a model has
already made (models whose forward changes the logits after the output layer). Written the obvious
way (``log_softmax(logits.float() / T)``) autograd keeps several full-size fp32 copies of the logits
alive: the upcast, the scaled logits, the log-softmax and, for the entropy, the probabilities and
their product. With a 150k-token vocabulary and 512-token completions that is gigabytes per
micro-batch. Here each is an autograd function that saves only its input (the logits, or the hidden
states and the output layer) and each row's log-sum-exp, works through the input a slice of tokens
at a time and recomputes that slice's log-probs in backward. The values equal the unchunked
formulas to float rounding.

A slice's arithmetic runs in place in at most two fp32 buffers per pass, allocated once per call and
reused by every slice. A slice is tens of MiB, and the C allocator hands out blocks that large with
``mmap`` and returns them on free, so a fresh tensor per operation is paid for again in page faults:
on a 2-core AMD EPYC with a 151,936-token vocabulary an ``exp`` over a slice took 86 ms into a fresh
tensor and 27 ms into a buffer, and a large-vocabulary GRPO step went from 33 s to 16.5 s.
"""

from __future__ import annotations

import math

import torch

CHUNK_ELEMENTS = 1 << 24  # logits entries (64 MiB in fp32) handled at once: the largest temporary


def _inverse_temperature(temperature: float) -> float:
    return 1.0 / temperature if temperature > 0 else 1.0


def _items_per_slice(per_item: int) -> int:
    return max(1, CHUNK_ELEMENTS // max(per_item, 1))


def _slices(length: int, per_item: int):
    """Slices over ``length`` items of ``per_item`` logits each, about ``CHUNK_ELEMENTS`` logits a slice."""
    step = _items_per_slice(per_item)
    for start in range(0, length, step):
        yield slice(start, start + step)


class _ChunkBuffer:
    """A flat fp32 buffer sized for the largest of ``_slices(length, per_item)``, handed out as a contiguous
    view of each slice's shape: one allocation serves every slice of a call."""

    def __init__(self, length: int, per_item: int, device: torch.device):
        self.data = torch.empty(min(length, _items_per_slice(per_item)) * per_item, dtype=torch.float32, device=device)

    def view(self, shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
        return self.data[: math.prod(shape)].view(shape)


def _score_slice_(z: torch.Tensor, s: slice, tokens: torch.Tensor, logp: torch.Tensor, lse: torch.Tensor,
                  entropy: torch.Tensor | None, spare: torch.Tensor | None) -> None:
    """Write log p(token), the log-sum-exp and (when ``entropy`` is given, with a ``spare`` buffer of ``z``'s
    shape) the entropy of slice ``s`` into those per-token outputs, from the slice's scaled logits ``z`` (..., V).

    In place: ``z`` is overwritten. With ``e = exp(z - max)`` and ``S`` its sum, the log-sum-exp is
    ``log S + max`` and the entropy ``log S - sum_j e_j (z_j - max) / S``."""
    picked = z.gather(-1, tokens[..., s, None]).squeeze(-1)
    top = z.amax(-1, keepdim=True)
    z.sub_(top)  # every exp below is at most 1
    e = z.exp_() if entropy is None else torch.exp(z, out=spare)
    total = e.sum(-1)
    log_total = total.log()
    if entropy is not None:
        entropy[..., s] = log_total - e.mul_(z).sum(-1) / total
    lse[..., s] = log_total + top.squeeze(-1)
    logp[..., s] = picked - lse[..., s]


def _logit_grad_(logp: torch.Tensor, s: slice, tokens: torch.Tensor, grad_logp: torch.Tensor | None,
                 grad_entropy: torch.Tensor | None, entropy: torch.Tensor | None, inv_t: float,
                 spare: torch.Tensor | None) -> torch.Tensor:
    """The gradient with respect to the unscaled logits of slice ``s``, given its log-probs ``logp`` (..., V),
    computed in place in ``logp`` (and ``spare``, needed only with an entropy gradient).

    ``d log p_k / dz = onehot_k - p`` and ``dH / dz_j = -p_j (log p_j + H)``, each times ``inv_t``."""
    if grad_entropy is not None:
        p = torch.exp(logp, out=spare)
        g = logp.add_(entropy[..., s, None]).mul_(p).mul_(-grad_entropy[..., s, None].float())
        if grad_logp is not None:
            g.sub_(p.mul_(grad_logp[..., s, None].float()))
    elif grad_logp is not None:
        g = logp.exp_().mul_(-grad_logp[..., s, None].float())
    else:
        g = logp.zero_()
    if grad_logp is not None:
        g.scatter_add_(-1, tokens[..., s, None], grad_logp[..., s, None].float())
    return g.mul_(inv_t)


class _LogitsLogprobs(torch.autograd.Function):
    """log p(token) and the entropy from (..., T, V) logits, a slice of tokens (dim -2) at a time."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, tokens: torch.Tensor, inv_t: float, with_entropy: bool):
        length, per_token = logits.shape[-2], math.prod(logits.shape[:-2]) * logits.shape[-1]
        logp = torch.empty(tokens.shape, dtype=torch.float32, device=logits.device)
        lse = torch.empty_like(logp)
        entropy = torch.empty_like(logp) if with_entropy else None
        z_buffer = _ChunkBuffer(length, per_token, logits.device)
        e_buffer = _ChunkBuffer(length, per_token, logits.device) if with_entropy else None
        for s in _slices(length, per_token):
            chunk = logits[..., s, :]
            _score_slice_(z_buffer.view(chunk.shape).copy_(chunk).mul_(inv_t), s, tokens, logp, lse, entropy,
                          None if e_buffer is None else e_buffer.view(chunk.shape))
        ctx.save_for_backward(logits, tokens, lse, entropy)
        ctx.inv_t = inv_t
        ctx.set_materialize_grads(False)
        return logp, entropy

    @staticmethod
    def backward(ctx, grad_logp, grad_entropy):
        logits, tokens, lse, entropy = ctx.saved_tensors
        length, per_token = logits.shape[-2], math.prod(logits.shape[:-2]) * logits.shape[-1]
        grad = torch.empty_like(logits)
        logp_buffer = _ChunkBuffer(length, per_token, logits.device)
        p_buffer = _ChunkBuffer(length, per_token, logits.device) if grad_entropy is not None else None
        for s in _slices(length, per_token):
            chunk = logits[..., s, :]
            logp = logp_buffer.view(chunk.shape).copy_(chunk).mul_(ctx.inv_t).sub_(lse[..., s, None])
            grad[..., s, :] = _logit_grad_(logp, s, tokens, grad_logp, grad_entropy, entropy, ctx.inv_t,
                                           None if p_buffer is None else p_buffer.view(chunk.shape))
        return grad, None, None, None


def _compute_dtype(hidden: torch.Tensor, weight: torch.Tensor) -> torch.dtype:
    """The matmul dtype autocast would pick for ``hidden @ weight.T`` (backward reuses it)."""
    device = hidden.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return torch.promote_types(hidden.dtype, weight.dtype)


def _scaled_logits(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, inv_t: float,
                   out: torch.Tensor) -> torch.Tensor:
    """``(hidden @ weight.T + bias) * inv_t`` in fp32, written into ``out`` (a view of a chunk buffer)."""
    if hidden.dtype == torch.float32 and weight.dtype == torch.float32:
        if bias is None:
            torch.mm(hidden, weight.t(), out=out)
        else:
            torch.addmm(bias, hidden, weight.t(), out=out)
    else:  # the lower-precision product autocast would make, upcast into the buffer
        out.copy_(torch.nn.functional.linear(hidden, weight, bias))
    return out.mul_(inv_t) if inv_t != 1.0 else out


class _HeadLogprobs(torch.autograd.Function):
    """log p(token) and the entropy from (N, H) hidden states and a (V, H) output layer, a chunk of rows at a time."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, tokens, inv_t: float, with_entropy: bool):
        dtype = _compute_dtype(hidden, weight)
        n, vocab = len(tokens), len(weight)
        logp = torch.empty(tokens.shape, dtype=torch.float32, device=hidden.device)
        lse = torch.empty_like(logp)
        entropy = torch.empty_like(logp) if with_entropy else None
        w, b = weight.to(dtype), None if bias is None else bias.to(dtype)
        z_buffer = _ChunkBuffer(n, vocab, hidden.device)
        e_buffer = _ChunkBuffer(n, vocab, hidden.device) if with_entropy else None
        for s in _slices(n, vocab):
            shape = (len(tokens[s]), vocab)
            _score_slice_(_scaled_logits(hidden[s].to(dtype), w, b, inv_t, z_buffer.view(shape)), s, tokens, logp,
                          lse, entropy, None if e_buffer is None else e_buffer.view(shape))
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
        logp_buffer = _ChunkBuffer(n, vocab, hidden.device)
        p_buffer = _ChunkBuffer(n, vocab, hidden.device) if grad_entropy is not None else None
        for s in _slices(n, vocab):
            h = hidden[s].to(ctx.dtype)
            shape = (len(h), vocab)
            logp = _scaled_logits(h, w, b, ctx.inv_t, logp_buffer.view(shape)).sub_(lse[s, None])
            g = _logit_grad_(logp, s, tokens, grad_logp, grad_entropy, entropy, ctx.inv_t,
                             None if p_buffer is None else p_buffer.view(shape))
            if need_h:  # the input gradient's product runs in the forward's dtype
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


def logits_logprobs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float,
                    entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token log p(token) and (with ``entropy``) the entropy of ``softmax(logits / temperature)``.

    ``logits`` is (..., T, V) in any float dtype and may be a strided view; ``tokens`` (..., T). Both
    outputs are fp32 and differentiable with respect to ``logits``; autograd saves only ``logits``
    and per-token values. ``temperature == 0`` counts as 1."""
    return _LogitsLogprobs.apply(logits, tokens, _inverse_temperature(temperature), entropy)


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float) -> torch.Tensor:
    """log p(token) under ``softmax(logits / temperature)``: ``logits_logprobs`` without the entropy."""
    return logits_logprobs(logits, tokens, temperature)[0]
