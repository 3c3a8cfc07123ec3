"""Per-token log-probabilities and entropies from logits, under the temperature the sampler used.

Why a module of its own: these two functions are the hot path of every update (one
(batch x tokens x vocab) softmax each), so they are kept small and separate where they can be
tuned (chunking over large vocabularies) without touching the policy or the algorithms.
"""

from __future__ import annotations

import torch


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float) -> torch.Tensor:
    """log p(token) under ``softmax(logits / temperature)``; ``temperature == 0`` counts as 1."""
    scaled = logits.float() / (temperature if temperature > 0 else 1.0)
    return torch.log_softmax(scaled, dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def entropy_from_logits(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per-token entropy of the temperature-scaled distribution."""
    scaled = logits.float() / (temperature if temperature > 0 else 1.0)
    logp = torch.log_softmax(scaled, dim=-1)
    return -(logp.exp() * logp).sum(-1)
