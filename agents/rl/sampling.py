"""Batched completion sampling with a KV cache, for prompts laid out the way the envs lay them out.

Why not ``model.generate``: RL spends most of its time sampling, and at the small sizes we train on
CPU the generic ``generate`` machinery (logits processors, stopping criteria, cache bookkeeping)
costs about as much as the model itself. This loop does one forward per new token for the batch,
reusing the KV cache, and returns exactly what the trainers need: completion ids padded after
EOS, the mask of real tokens and each token's log-prob under the (temperature-scaled) sampling
distribution. Prompts arrive left-padded (the env's ``[0, P)`` window), so every row's next token
sits in the same column and positions are computed from the attention mask.

Where the time goes, and what this loop does about it (measured with ``python -m benchmarks.perf``):

- columns that are padding in every row are cut off the prompt before the first forward (the env
  pads to a fixed window, usually wider than the batch's longest prompt);
- neighbouring rows with the same prompt (a GRPO group) prefill it once and copy its cache rows;
- rows that have emitted EOS leave the batch (their KV cache rows are dropped) once enough of them
  have finished, so the model stops computing tokens that will be thrown away;
- the KV cache is written into a buffer sized for the whole window instead of being concatenated
  anew at every token;
- the token is drawn by inverting the cumulative distribution with one uniform number per row, and its
  log-prob's normaliser is the same sum; at a large vocabulary the inversion takes two levels (blocks,
  then a token inside one) and writes into buffers kept across tokens (``DrawBuffers``). On one thread
  of this project's AMD EPYC at 4 / 64 / 256 x 151,936: 1.9 / 27 / 111 ms per draw, where softmax with
  ``torch.multinomial`` (what ``generate`` does) takes 23 / 407 / 1635 ms and a one-level float64
  cumulative sum into fresh tensors took 19 / 334 / 1211 ms;
- on CUDA, whether rows have finished is read back every few tokens, not at every token.

What is left is the model's forward, and at the sizes trained on a CPU much of that is Python (HF's
modules, mask construction) rather than arithmetic. ``compile=True`` runs the forward through
``torch.compile`` with dynamic shapes, which removes most of it: 1.2-1.75x faster sampling of a
3-layer 128-wide GPT-2 (``benchmarks.perf``, batch 64-256), after a compile of some 15-30 s per
process (so it pays off on long runs, not on a short test; in a GRPO run on a 2-layer 64-wide model
with 4-token answers it gained 1.1x). It needs a C++ compiler on the CPU, and it changes the
arithmetic's rounding, not the sampled distribution.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from transformers import DynamicCache, PreTrainedModel
from transformers.cache_utils import DynamicLayer

COMPACT_WHEN_FINISHED = 0.25  # drop finished rows once this fraction of the rows still sampled is done
CUDA_CHECK_EVERY = 4  # tokens between reads of the "finished" flags on CUDA (each read is a host sync)


@dataclass
class Completions:
    """A batch of sampled completions, (B, T) each, T = the longest completion in the batch.

    ``ids`` are padded with ``pad_token_id`` after each row's EOS; ``mask`` is 1 for real tokens
    (the EOS included); ``logprobs`` are 0 where ``mask`` is 0; ``ended`` says whether the row
    produced an EOS within ``max_new_tokens``.
    """

    ids: torch.Tensor
    mask: torch.Tensor
    logprobs: torch.Tensor
    ended: torch.Tensor

    @property
    def lengths(self) -> torch.Tensor:
        return self.mask.sum(1)


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that skip left padding: the first real token of every row is position 0."""
    return (attention_mask.long().cumsum(1) - 1).clamp(min=0)


def prompt_groups(prompt_ids: torch.Tensor, prompt_mask: torch.Tensor) -> torch.Tensor | None:
    """For each row, the index of its prompt among the runs of identical neighbouring prompts ((B,) long),
    or None when no row repeats the one before it. GRPO-style batches hold ``group_size`` consecutive
    copies of each prompt; their prompt tokens need one forward, not ``group_size``."""
    if len(prompt_ids) < 2:
        return None
    same = (prompt_ids[1:] == prompt_ids[:-1]).all(1) & (prompt_mask[1:] == prompt_mask[:-1]).all(1)
    if not bool(same.any()):
        return None
    return torch.cat([same.new_zeros(1, dtype=torch.long), (~same).long().cumsum(0)])


def group_starts(groups: torch.Tensor) -> torch.Tensor:
    """The first row of each run in ``prompt_groups``' output (a bool mask): the rows that are run once."""
    first = torch.ones_like(groups, dtype=torch.bool)
    first[1:] = groups[1:] != groups[:-1]
    return first


def trim_left_padding(ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop the leading columns that are padding in every row (positions come from the mask, so nothing
    else changes); the window keeps at least one column."""
    leading = int((mask.long().cumsum(1) == 0).sum(1).min().clamp(max=mask.shape[1] - 1)) if mask.numel() else 0
    return ids[:, leading:], mask[:, leading:]


def outside_top_k(logits: torch.Tensor, top_k: int) -> torch.Tensor | None:
    """Where a row's logit is not among its ``top_k`` largest (a bool mask), or None when ``top_k`` keeps them all."""
    if top_k <= 0 or top_k >= logits.shape[-1]:
        return None
    return logits < torch.topk(logits, top_k, dim=-1).values[..., -1:]


BLOCK = 1024  # vocabulary entries per block of the two-level draw
TWO_LEVEL_FROM = 4 * BLOCK  # vocabularies at least this large are drawn from in two levels; smaller ones in one


class DrawBuffers:
    """The (B, V) float32 tensors ``sample_tokens`` writes into, kept by the sampler for every token of a batch.

    Why: at a large vocabulary these are tens of MB (64 x 151,936 x 4 bytes = 39 MB), and glibc hands every
    allocation that large fresh pages from ``mmap``, which the kernel faults in on first touch and unmaps on free.
    On this project's AMD EPYC the faults cost more than the arithmetic: at 64 x 151,936 a one-level draw took
    334 ms in fresh tensors and 49 ms in kept ones (27 ms in two levels). Rows that finish shrink the batch, and
    the buffers' first rows serve it."""

    def __init__(self) -> None:
        self.tensors: dict[str, torch.Tensor] = {}

    def like(self, name: str, rows: torch.Tensor) -> torch.Tensor:
        """A float32 buffer shaped as ``rows``, on its device, its contents undefined."""
        kept = self.tensors.get(name)
        n, width = rows.shape
        if kept is None or kept.shape[0] < n or kept.shape[1] != width or kept.device != rows.device:
            kept = self.tensors[name] = torch.empty(n, width, dtype=torch.float32, device=rows.device)
        return kept[:n]


def inverse_cdf(weights: torch.Tensor, uniform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each row of non-negative (B, V) ``weights`` and (B, 1) float64 ``uniform`` on ``[0, 1)``: the first
    token ``i`` whose cumulative weight reaches ``(1 - u) * total``, and the row's total ((B, 1) float64).

    That is token i with probability ``w_i / total``; ``1 - u > 0``, so a token of weight 0 is never drawn. The
    cumulative sum is float64, whose rounding (~1e-16) is far below any float32 weight."""
    cdf = torch.cumsum(weights, -1, dtype=torch.float64)
    return torch.searchsorted(cdf, (1 - uniform) * cdf[:, -1:]).squeeze(1), cdf[:, -1:]


def two_level_inverse_cdf(weights: torch.Tensor, uniform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``inverse_cdf`` in two steps, for large vocabularies: the block of ``BLOCK`` entries the target falls in,
    from the blocks' sums, then the token inside that block, from a cumulative sum of its ``BLOCK`` entries only.

    Why: a float64 cumulative sum over the whole vocabulary reads the weights, writes twice their bytes and
    reads those again; block sums read the weights once, in float32, and everything after works on
    (B, V / BLOCK) and (B, BLOCK). The same uniform number picks the same token as ``inverse_cdf`` would, up to
    rounding: a block is picked with probability its float32 sum over the total (the sum of 1024 non-negative
    float32 terms is off by a relative ~1e-7, as the weights themselves are), and within the block the target's
    place, as a fraction of the block's sum, is inverted exactly as in ``inverse_cdf``."""
    n, V = weights.shape
    whole = V // BLOCK * BLOCK
    sums = weights[:, :whole].view(n, -1, BLOCK).sum(-1)
    if whole < V:
        sums = torch.cat([sums, weights[:, whole:].sum(-1, keepdim=True)], 1)
    sums = sums.double()
    cdf = sums.cumsum(-1)
    target = (1 - uniform) * cdf[:, -1:]
    block = torch.searchsorted(cdf, target)  # the first block to reach the target: its sum is > 0
    block_sum = sums.gather(1, block)
    share = ((target - cdf.gather(1, block) + block_sum) / block_sum).clamp_(0, 1)
    ids = block * BLOCK + torch.arange(BLOCK, device=weights.device)
    inner = torch.cumsum(weights.gather(1, ids.clamp(max=V - 1)).masked_fill_(ids >= V, 0), -1, dtype=torch.float64)
    # > 0: never a leading token of weight 0; <= the block's total: never a trailing one
    place = (share * inner[:, -1:]).clamp_(min=torch.finfo(torch.float64).tiny)
    return (block * BLOCK + torch.searchsorted(inner, place)).squeeze(1), cdf[:, -1:]


def sample_tokens(logits: torch.Tensor, temperature: float, top_k: int = 0, generator: torch.Generator | None = None,
                  buffers: DrawBuffers | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One token per row of (B, V) ``logits`` and its log-prob under ``softmax(logits / temperature)``.

    ``temperature == 0`` is greedy (log-prob 0). Otherwise the weights ``exp(scaled - max)`` (the
    probabilities times a per-row constant) are inverted with one uniform number per row (``inverse_cdf``;
    ``two_level_inverse_cdf`` from ``TWO_LEVEL_FROM`` entries on, where it is faster). The log-prob's
    normaliser is the same sum of weights. Top-k zeroes the weights outside the k largest logits; the
    log-prob stays that of the full distribution (Huang et al. 2024, #5). ``buffers`` keeps the (B, V)
    work tensors across calls (see ``DrawBuffers``).
    """
    if temperature == 0:
        token = logits.argmax(-1)
        return token, torch.zeros(token.shape, dtype=torch.float32, device=logits.device)
    buffers = buffers or DrawBuffers()
    scaled = logits.float()
    if temperature != 1:
        scaled = torch.div(scaled, temperature, out=buffers.like("scaled", scaled))
    peak = scaled.amax(-1, keepdim=True)
    weights = torch.sub(scaled, peak, out=buffers.like("weights", scaled)).exp_()
    outside, normaliser = outside_top_k(scaled, top_k), None
    if outside is not None:  # the log-prob is the full distribution's: its normaliser is summed before the cut
        normaliser = weights.sum(-1, keepdim=True).double()
        weights.masked_fill_(outside, 0)
    uniform = torch.rand(len(weights), 1, dtype=torch.float64, device=weights.device, generator=generator)
    draw = two_level_inverse_cdf if weights.shape[-1] >= TWO_LEVEL_FROM else inverse_cdf
    token, total = draw(weights, uniform)
    normaliser = total if normaliser is None else normaliser
    return token, (scaled.gather(-1, token[:, None]) - peak - normaliser.log().float()).squeeze(-1)


class WindowKVLayer(DynamicLayer):
    """A full-attention cache layer that writes into a buffer sized for the whole sampling window.

    ``DynamicLayer`` concatenates a new key/value tensor at every token (quadratic copying over a
    completion); this one writes in place and hands attention a view of the filled part.
    """

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity, self.length = capacity, 0

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        n = key_states.shape[-2]
        if not self.is_initialized:
            self.dtype, self.device = key_states.dtype, key_states.device
            self.key_buffer = key_states.new_empty(*key_states.shape[:2], self.capacity, key_states.shape[-1])
            self.value_buffer = value_states.new_empty(*value_states.shape[:2], self.capacity, value_states.shape[-1])
            self.is_initialized = True
        if self.length + n > self.capacity:
            raise ValueError(f"KV cache window of {self.capacity} tokens exceeded")
        self.key_buffer[:, :, self.length : self.length + n] = key_states
        self.value_buffer[:, :, self.length : self.length + n] = value_states
        self.length += n
        self.keys, self.values = self.key_buffer[:, :, : self.length], self.value_buffer[:, :, : self.length]
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep only the rows ``indices``. One ``index_select`` of the whole buffer is about twice as fast
        as gathering the filled part and writing it into a fresh buffer, unfilled columns and all."""
        if not self.is_initialized:
            return
        self.key_buffer = self.key_buffer.index_select(0, indices)
        self.value_buffer = self.value_buffer.index_select(0, indices)
        self.keys, self.values = self.key_buffer[:, :, : self.length], self.value_buffer[:, :, : self.length]


def full_attention_cache(cache: DynamicCache) -> bool:
    """Whether every layer of ``cache`` is plain full attention, whose rows may be dropped or copied
    (sliding-window and recurrent layers keep state that is not one row per token)."""
    return bool(cache.layers) and all(type(layer) is DynamicLayer for layer in cache.layers)


def window_cache(model: PreTrainedModel, capacity: int) -> tuple[DynamicCache, bool]:
    """A cache of ``WindowKVLayer`` when every layer is plain full attention, else the model's own
    ``DynamicCache`` (sliding windows, linear attention); the flag says whether rows can be dropped."""
    cache = DynamicCache(config=model.config)
    if full_attention_cache(cache):
        cache.layers = [WindowKVLayer(capacity) for _ in cache.layers]
        return cache, True
    return cache, False


_COMPILED: weakref.WeakKeyDictionary[torch.nn.Module, Callable] = weakref.WeakKeyDictionary()


def compiled_forward(model: PreTrainedModel) -> Callable:
    """``model.forward`` under ``torch.compile(dynamic=True)``, made once per model and kept while the model
    lives. Dynamic shapes: the batch shrinks as rows finish and the cache grows every token, and one graph
    serves them all. The parameters are the graph's inputs, so optimizer steps between calls are seen."""
    if model not in _COMPILED:
        _COMPILED[model] = torch.compile(model.forward, dynamic=True)
    return _COMPILED[model]


@torch.inference_mode()
def sample_completions(
    model: PreTrainedModel,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    max_new_tokens: int,
    eos_token_id: int | Sequence[int],
    pad_token_id: int,
    temperature: float = 1.0,
    top_k: int = 0,
    generator: torch.Generator | None = None,
    vocab_size: int | None = None,
    compile: bool = False,
) -> Completions:
    """Sample up to ``max_new_tokens`` tokens for every left-padded prompt row, stopping rows at EOS.

    ``eos_token_id`` may be several ids (``generation_config.eos_token_id`` lists, a chat template's
    end-of-turn token): a row stops at the first of any of them, and ``ended`` counts each.

    ``temperature == 0`` is greedy decoding. Log-probs are those of the temperature-scaled full
    distribution (before top-k), the quantity PPO's ratio is computed with (Huang et al. 2024, #5).
    Which random numbers a row gets depends on which rows are still being sampled, so a seed fixes
    the result for a given batch, not for a row on its own.

    ``vocab_size`` (the tokenizer's length) keeps ids at or above it from being sampled: models often
    have more output rows than their tokenizer has tokens (Qwen2: 151,936 for 151,665), and such an
    id decodes to nothing and is not a valid action. Sampling and these log-probs then use the
    distribution renormalised over the tokenizer's ids; the trainers' log-probs keep every row, and the
    two differ by the padded rows' probability, which a trained model leaves near zero.

    ``compile`` runs the model's forward through ``compiled_forward`` (see the module docstring).

    The loop runs under ``torch.inference_mode`` (no autograd bookkeeping on its many small ops: 3-7%
    faster than ``no_grad`` at batch 64-256 with 8-32 tokens, medians of 40 interleaved calls each) and
    its results are made outside it: an inference tensor cannot be saved for backward, and the trainers'
    forward takes these ids as input.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    batch, device = prompt_ids.shape[0], prompt_ids.device
    stop = torch.as_tensor([eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id), device=device)
    prompt_ids, prompt_mask = trim_left_padding(prompt_ids, prompt_mask)
    P = prompt_ids.shape[1]
    # the attention mask of the whole window, allocated once: prompt mask, then ones for new tokens
    mask = torch.cat([prompt_mask.long(), torch.ones(batch, max_new_tokens, dtype=torch.long, device=device)], 1)
    cache, can_compact = window_cache(model, P + max_new_tokens)
    groups = prompt_groups(prompt_ids, prompt_mask) if can_compact else None
    if groups is not None:  # a group's copies of one prompt: prefill it once, then copy its cache rows
        first = group_starts(groups)
        prompt_ids, prompt_mask = prompt_ids[first], prompt_mask[first]
    forward = compiled_forward(model) if compile else model
    out = forward(input_ids=prompt_ids, attention_mask=prompt_mask.long(), position_ids=position_ids_from_mask(prompt_mask),
                  past_key_values=cache, use_cache=True, logits_to_keep=1)  # the prompt's last logits only
    logits = out.logits[:, -1, :vocab_size]
    if groups is not None:
        cache.batch_select_indices(groups)
        logits = logits[groups]
    positions = mask[:, :P].sum(1, keepdim=True)  # the next token's position in every row
    ids = torch.full((batch, max_new_tokens), pad_token_id, dtype=torch.long, device=device)
    logprobs = torch.zeros(batch, max_new_tokens, dtype=torch.float32, device=device)
    rows = torch.arange(batch, device=device)  # the original row of every row still being sampled
    finished = torch.zeros(batch, dtype=torch.bool, device=device)  # per row still being sampled
    check_every = CUDA_CHECK_EVERY if device.type == "cuda" else 1
    buffers = DrawBuffers()
    for t in range(max_new_tokens):
        token, logp = sample_tokens(logits, temperature, top_k, generator, buffers)
        ids[rows, t], logprobs[rows, t] = token, logp
        finished |= torch.isin(token, stop)
        if t == max_new_tokens - 1:
            break
        if (t + 1) % check_every == 0:
            n_finished = int(finished.sum())
            if n_finished == len(rows):
                break
            if can_compact and n_finished >= COMPACT_WHEN_FINISHED * len(rows):
                keep = (~finished).nonzero().squeeze(1)
                rows, token, positions, mask = rows[keep], token[keep], positions[keep], mask[keep]
                finished = finished[keep]
                cache.batch_select_indices(keep)
        logits = forward(input_ids=token[:, None], attention_mask=mask[:, : P + t + 1], position_ids=positions,
                         past_key_values=cache, use_cache=True).logits[:, -1, :vocab_size]
        positions = positions + 1
    is_eos = torch.isin(ids, stop)
    ended = is_eos.any(1)
    first_eos = torch.where(ended, is_eos.int().argmax(1), max_new_tokens)
    real = torch.arange(max_new_tokens, device=device)[None] <= first_eos[:, None]
    width = int(real.sum(1).max()) if batch else 0
    real = real[:, :width]
    with torch.inference_mode(False):  # tensors made outside inference mode are ordinary ones
        return Completions(ids=torch.where(real, ids[:, :width], pad_token_id), mask=real.long(),
                           logprobs=logprobs[:, :width] * real, ended=ended.clone())
