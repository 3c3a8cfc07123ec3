"""Reference-based text metrics (sacrebleu's BLEU and chrF, Google's ROUGE), scaled to [0, 1]."""

from __future__ import annotations

import numpy as np
import sacrebleu

from llm_gym.rewards.base import RewardModel


def _references(metadata) -> list[str]:
    try:
        return [str(m["reference"]) for m in metadata]
    except KeyError as err:
        raise KeyError("reference-based rewards need metadata 'reference' for every sample") from err


class Bleu(RewardModel):
    """Sentence BLEU (sacrebleu, exponential smoothing) / 100."""

    name = "bleu"

    def __call__(self, prompts, completions, metadata) -> np.ndarray:
        return np.array(
            [sacrebleu.sentence_bleu(c, [r]).score / 100 for c, r in zip(completions, _references(metadata))]
        )


class ChrF(RewardModel):
    """Sentence chrF (sacrebleu) / 100: character n-gram F-score, robust for tiny vocabularies."""

    name = "chrf"

    def __call__(self, prompts, completions, metadata) -> np.ndarray:
        return np.array(
            [sacrebleu.sentence_chrf(c, [r]).score / 100 for c, r in zip(completions, _references(metadata))]
        )


class Rouge(RewardModel):
    """ROUGE F-measure (``rouge1``, ``rouge2`` or ``rougeL``) against the reference."""

    def __init__(self, variant: str = "rougeL"):
        if variant not in ("rouge1", "rouge2", "rougeL"):
            raise ValueError(f"unknown ROUGE variant {variant!r}; use rouge1, rouge2 or rougeL")
        from rouge_score import rouge_scorer  # imports nltk and scipy.stats: a second on every import of llm_gym

        self.variant, self.name = variant, variant
        self.scorer = rouge_scorer.RougeScorer([variant])

    def __call__(self, prompts, completions, metadata) -> np.ndarray:
        return np.array(
            [self.scorer.score(r, c)[self.variant].fmeasure for c, r in zip(completions, _references(metadata))]
        )
