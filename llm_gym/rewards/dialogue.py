"""The seed's dialogue reward as named components: informativeness, relevance, fluency (+ summary checks).

Why components and not one score: a composite such as
``"0.5*informativeness + 0.3*relevance + 0.2*fluency"`` reports each part in the env's
``info["reward_components"]``, so a benchmark can see which part an agent exploits (long answers
that list every fact, or fluent answers about nothing). All are measurable offline: fact coverage
and topic overlap from the task's metadata, fluency from a format/grammar check or, with
``fluency:lm=DIR``, the likelihood of the answer under a small local causal LM (never downloaded).
``fact_coverage`` and ``conciseness`` are the same checks for summaries.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from llm_gym.models import load_causal_lm
from llm_gym.rewards.base import RewardModel
from llm_gym.scoring import conciseness, current_turn, fact_coverage, format_fluency, informativeness, relevance
from llm_gym.tokenization import encode_completions, encode_prompts


class Informativeness(RewardModel):
    """Coverage of the facts the user asked for in this turn, discounted by wrong numbers/yes/no."""

    name = "informativeness"

    def __call__(self, prompts, completions, metadata) -> np.ndarray:
        return np.array([informativeness(c, current_turn(m)) for c, m in zip(completions, metadata)])


class Relevance(RewardModel):
    """Overlap with the user's turn: its topic mentioned and no other topic (or its content words)."""

    name = "relevance"

    def __call__(self, prompts, completions, metadata) -> np.ndarray:
        return np.array(
            [relevance(c, current_turn(m), m.get("items", ())) for c, m in zip(completions, metadata)]
        )


class Fluency(RewardModel):
    """Format/grammar check of the answer (default), or ``exp(-mean token NLL)`` under a local LM.

    ``lm=DIR``: any local Hugging Face causal-LM directory (e.g. a tiny model trained on the task's
    text); the score is the per-token likelihood of the completion given the prompt, in (0, 1].
    """

    name = "fluency"

    def __init__(self, lm: str | None = None, max_words: int = 12, device: str = "cpu", batch_size: int = 64):
        self.max_words, self.batch_size = max_words, batch_size
        self.model = self.tokenizer = None
        if lm is not None:
            if not Path(lm).is_dir():
                raise FileNotFoundError(f"fluency LM directory not found: {lm} (only local directories are loaded)")
            self.model, self.tokenizer = load_causal_lm(lm, device=device)
            self.model.eval()

    def __call__(self, prompts, completions, metadata) -> np.ndarray:
        if self.model is None:
            return np.array([format_fluency(c, self.max_words) for c in completions])
        return np.concatenate(
            [self._likelihood(prompts[s : s + self.batch_size], completions[s : s + self.batch_size])
             for s in range(0, len(prompts), self.batch_size)]
        ) if len(prompts) else np.zeros(0)

    @torch.inference_mode()
    def _likelihood(self, prompts, completions) -> np.ndarray:
        tok, model = self.tokenizer, self.model
        window = model.config.max_position_embeddings if hasattr(model.config, "max_position_embeddings") else 1024
        rows, starts = [], []
        for head, tail in zip(encode_prompts(tok, prompts), encode_completions(tok, completions)):
            ids = (head + tail + [tok.eos_token_id])[-window:]
            n_completion = len(tail) + 1
            rows.append(ids)
            starts.append(max(1, len(ids) - n_completion))
        width = max(map(len, rows))
        device = next(model.parameters()).device
        input_ids = torch.full((len(rows), width), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(input_ids)
        for r, ids in enumerate(rows):
            input_ids[r, : len(ids)] = torch.tensor(ids)
            mask[r, : len(ids)] = 1
        logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits.float()
        logprobs = torch.log_softmax(logits[:, :-1], -1).gather(-1, input_ids[:, 1:, None].to(device))[..., 0].cpu()
        positions = torch.arange(1, width)[None]
        scored = (positions >= torch.tensor(starts)[:, None]) & (mask[:, 1:] == 1)
        mean_logprob = (logprobs * scored).sum(1) / scored.sum(1).clamp(min=1)
        return torch.exp(mean_logprob).numpy()


class FactCoverage(RewardModel):
    """Fraction of ``metadata["facts"]`` stated in the completion (summaries: the key facts)."""

    name = "fact_coverage"

    def __call__(self, prompts, completions, metadata) -> np.ndarray:
        try:
            return np.array([fact_coverage(c, m["facts"]) for c, m in zip(completions, metadata)])
        except KeyError as err:
            raise KeyError("fact_coverage needs metadata 'facts' (a list of strings) for every sample") from err


class Conciseness(RewardModel):
    """1 within ``metadata["max_words"]`` (or ``max_words=``) words, ``budget / n_words`` beyond."""

    name = "conciseness"

    def __init__(self, max_words: int | None = None):
        self.max_words = max_words

    def __call__(self, prompts, completions, metadata) -> np.ndarray:
        budgets = [self.max_words or m.get("max_words") for m in metadata]
        if None in budgets:
            raise KeyError("conciseness needs max_words= or metadata 'max_words' for every sample")
        return np.array([conciseness(c, int(b)) for c, b in zip(completions, budgets)])
