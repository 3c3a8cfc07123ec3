"""Learned reward models: any local Hugging Face sequence-classification directory (num_labels=1)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer

from llm_gym.models import ensure_pad_token
from llm_gym.rewards.base import RewardModel
from llm_gym.tokenization import encode_prompts


def reward_model_text(prompt: str, completion: str) -> str:
    """The exact text a learned reward model sees; reward-model training must use the same."""
    return prompt + completion


class LearnedReward(RewardModel):
    """Scores ``prompt + completion`` with a scalar-head classifier, in batches, on ``device``.

    Texts are tokenised like the env's prompts (one BOS, even after a chat template's own); inputs
    longer than the model's window are truncated from the left, so the completion (what is being
    judged) is always kept.
    """

    name = "learned"

    def __init__(
        self,
        path: str | Path,
        device: str = "cpu",
        batch_size: int = 64,
        max_length: int | None = None,
        trust_remote_code: bool = False,
    ):
        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"learned reward model directory not found: {path}")
        self.device, self.batch_size = torch.device(device), batch_size
        self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        self.tokenizer.truncation_side = "left"
        self.tokenizer.padding_side = "right"
        self.path = path
        from transformers import AutoModelForSequenceClassification  # imported when needed: see load_causal_lm

        self.model = AutoModelForSequenceClassification.from_pretrained(path, trust_remote_code=trust_remote_code)
        if self.model.config.num_labels != 1:
            raise ValueError(f"reward model at {path} has num_labels={self.model.config.num_labels}; expected 1")
        self._match_pad_tokens(path)
        self.model.to(self.device).eval()
        window = getattr(self.model.config, "max_position_embeddings", None) or self.tokenizer.model_max_length
        self.max_length = min(max_length or window, window)

    def _match_pad_tokens(self, path: Path) -> None:
        """Pad with the id the model skips when it looks for the last token (``config.pad_token_id``);
        without one, with eos, as ``load_tokenizer`` does for the policy."""
        config, tokenizer = self.model.config, self.tokenizer
        if tokenizer.pad_token_id is None and config.pad_token_id is not None:
            tokenizer.pad_token = tokenizer.convert_ids_to_tokens(config.pad_token_id)
        ensure_pad_token(tokenizer, f"reward model tokenizer at {path}")
        if config.pad_token_id is None:
            config.pad_token_id = tokenizer.pad_token_id
        elif config.pad_token_id != tokenizer.pad_token_id:
            raise ValueError(
                f"reward model at {path}: its config pads with id {config.pad_token_id} but its tokenizer with "
                f"{tokenizer.pad_token_id}; scores would read padding as text. Save them with the same pad token"
            )

    @torch.inference_mode()
    def __call__(self, prompts, completions, metadata) -> np.ndarray:
        texts = [reward_model_text(p, c) for p, c in zip(prompts, completions)]
        scores = []
        for start in range(0, len(texts), self.batch_size):
            ids = [row[-self.max_length :] for row in encode_prompts(self.tokenizer, texts[start : start + self.batch_size])]
            batch = self.tokenizer.pad({"input_ids": ids}, return_tensors="pt").to(self.device)
            scores.append(self.model(**batch).logits[:, 0].float().cpu())
        return torch.cat(scores).numpy() if scores else np.zeros(0, dtype=np.float32)
