"""Batched completion sampling with a KV cache, for prompts laid out the way the envs lay them out.

Why not ``model.generate``: RL spends most of its time sampling, and at the small sizes we train on
CPU the generic ``generate`` machinery (logits processors, stopping criteria, cache bookkeeping)
costs about as much as the model itself. This loop does one forward per new token for the whole
batch, reusing ``past_key_values``, and returns exactly what the trainers need: completion ids
padded after EOS, the mask of real tokens and each token's log-prob under the (temperature-scaled)
sampling distribution. Prompts arrive left-padded (the env's ``[0, P)`` window), so every row's
next token sits in the same column and positions are computed from the attention mask.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel


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


def filter_top_k(logits: torch.Tensor, top_k: int) -> torch.Tensor:
    """Keep the ``top_k`` largest logits of each row (all of them when ``top_k`` is 0)."""
    if top_k <= 0 or top_k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


@torch.no_grad()
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
) -> Completions:
    """Sample up to ``max_new_tokens`` tokens for every left-padded prompt row, stopping rows at EOS.

    ``eos_token_id`` may be several ids (``generation_config.eos_token_id`` lists, a chat template's
    end-of-turn token): a row stops at the first of any of them, and ``ended`` counts each.

    ``temperature == 0`` is greedy decoding. Log-probs are those of the temperature-scaled full
    distribution (before top-k), the quantity PPO's ratio is computed with (Huang et al. 2024, #5).
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    batch, device = prompt_ids.shape[0], prompt_ids.device
    stop = torch.as_tensor([eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id), device=device)
    P = prompt_ids.shape[1]
    # the attention mask of the whole window, allocated once: prompt mask, then ones for new tokens
    mask = torch.cat([prompt_mask.long(), torch.ones(batch, max_new_tokens, dtype=torch.long, device=device)], 1)
    out = model(input_ids=prompt_ids, attention_mask=mask[:, :P], position_ids=position_ids_from_mask(mask[:, :P]),
                use_cache=True, logits_to_keep=1)  # the prompt's last logits only (large vocabularies)
    positions = mask[:, :P].sum(1, keepdim=True)  # the next token's position in every row
    ids = torch.full((batch, max_new_tokens), pad_token_id, dtype=torch.long, device=device)
    logprobs = torch.zeros(batch, max_new_tokens, dtype=torch.float32, device=device)
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    steps = 0
    for t in range(max_new_tokens):
        logits = out.logits[:, -1].float()
        if temperature == 0:
            token = logits.argmax(-1)
            logp = torch.zeros_like(logits[:, 0])
        else:
            scaled = logits / temperature
            probs = torch.softmax(filter_top_k(scaled, top_k), dim=-1)
            token = torch.multinomial(probs, 1, generator=generator).squeeze(1)
            logp = torch.log_softmax(scaled, dim=-1).gather(1, token[:, None]).squeeze(1)
        ids[:, t] = torch.where(done, pad_token_id, token)
        logprobs[:, t] = torch.where(done, 0.0, logp)
        done |= torch.isin(token, stop)
        steps = t + 1
        if bool(done.all()) or t == max_new_tokens - 1:
            break
        out = model(
            input_ids=ids[:, t : t + 1],
            attention_mask=mask[:, : P + t + 1],
            position_ids=positions,
            past_key_values=out.past_key_values,
            use_cache=True,
        )
        positions = positions + 1
    ids, logprobs = ids[:, :steps], logprobs[:, :steps]
    is_eos = torch.isin(ids, stop)
    ended = is_eos.any(1)
    first_eos = torch.where(ended, is_eos.int().argmax(1), steps)
    real = torch.arange(steps, device=device)[None] <= first_eos[:, None]
    return Completions(ids=ids, mask=real.long(), logprobs=logprobs * real, ended=ended)
