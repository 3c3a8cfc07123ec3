"""How prompt and completion text becomes token ids, the same way in the env, SFT, reward models and sampling.

Why one module: a policy is trained, sampled and scored on ids that must be the ones it was
trained on. Three rules, shared by every stage:

- **Prompts** are tokenised with the tokenizer's special tokens (GPT-2 adds none, a Llama-style
  post-processor adds a BOS), *except* that a prompt a chat template already rendered with a BOS
  (``{{ bos_token }}``) does not get a second one. This is TRL's rule for chat data (a rendered
  template is tokenised without adding special tokens again) written as a guard on the text, so
  one function serves plain prompts and rendered chat prompts alike.
- **Completions** are tokenised without special tokens and continue the prompt's ids, so the env,
  SFT and the sampler share one prompt/completion boundary: the end of the prompt text, i.e. the
  end of the chat template's generation prompt. Where that boundary is a token boundary (real
  templates end their generation prompt with a newline or a special token) these ids equal the
  ones of the jointly tokenised text; ``joint_boundary_ok`` tells whether it is.
- **A turn ends** at any of the model's stop tokens: the tokenizer's EOS plus every id of
  ``generation_config.eos_token_id`` (which may be a list, e.g. Llama 3's ``<|end_of_text|>`` and
  ``<|eot_id|>``, Qwen's ``<|im_end|>`` and ``<|endoftext|>``). ``stop_token_ids`` collects them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from transformers import GenerationConfig, PreTrainedTokenizerBase


def encode_prompts(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of prompts: special tokens added once, never a second BOS after a rendered ``{{ bos_token }}``."""
    if not texts:
        return []
    ids = tokenizer(list(texts))["input_ids"]
    bos, bos_text = tokenizer.bos_token_id, tokenizer.bos_token
    if bos is None or not bos_text:
        return ids
    return [row[1:] if text.startswith(bos_text) and row[:2] == [bos, bos] else row for text, row in zip(texts, ids)]


def encode_completions(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of completions (no special tokens): what follows a prompt's ids."""
    return tokenizer(list(texts), add_special_tokens=False)["input_ids"] if texts else []


def joint_boundary_ok(tokenizer: PreTrainedTokenizerBase, prompt: str, completion: str) -> bool:
    """Whether prompt ids + completion ids equal the ids of ``prompt + completion`` tokenised together.

    False when a token would straddle the boundary (a template that ends in a space before a
    byte-level BPE answer: ``'Ġ'`` + ``'118'`` apart, ``'Ġ1'`` + ``'18'`` together).
    """
    head = encode_prompts(tokenizer, [prompt])[0]
    tail = encode_completions(tokenizer, [completion])[0]
    return head + tail == encode_prompts(tokenizer, [prompt + completion])[0]


def _as_ids(value: Any) -> list[int]:
    if value is None:
        return []
    return [int(v) for v in value] if isinstance(value, Iterable) else [int(value)]


def stop_token_ids(
    tokenizer: PreTrainedTokenizerBase, generation_config: GenerationConfig | str | Path | None = None
) -> tuple[int, ...]:
    """Every id that ends a turn: the tokenizer's EOS first, then ``generation_config.eos_token_id``.

    ``generation_config`` is a ``GenerationConfig`` or a model directory (its
    ``generation_config.json`` is read if present). Every id must be in the tokenizer's vocabulary:
    a stop token the tokenizer cannot produce would never end a turn.
    """
    if isinstance(generation_config, (str, Path)):
        path = Path(generation_config)
        generation_config = GenerationConfig.from_pretrained(path) if (path / "generation_config.json").is_file() else None
    ids = dict.fromkeys(_as_ids(tokenizer.eos_token_id))
    if generation_config is not None:
        ids.update(dict.fromkeys(_as_ids(generation_config.eos_token_id)))
    if not ids:
        raise ValueError("the tokenizer has no eos token and no generation config names one: turns could never end")
    size = len(tokenizer)
    bad = [i for i in ids if not 0 <= i < size]
    if bad:
        raise ValueError(
            f"end-of-turn token id {bad[0]} (generation_config.eos_token_id) is not in the tokenizer's vocabulary of "
            f"{size} tokens; the model and tokenizer do not belong together"
        )
    return tuple(ids)


def template_special_tokens(tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """Special tokens a chat-rendered prompt carries as text: those the chat template writes (BOS included)."""
    template = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else ""
    found = [t for t in [*tokenizer.all_special_tokens, *tokenizer.get_added_vocab()] if t and t in template]
    found += [token for name in ("bos_token", "eos_token") if name in template and (token := getattr(tokenizer, name))]
    return list(dict.fromkeys(found))


def check_reads_special_tokens(writer: PreTrainedTokenizerBase, reader: PreTrainedTokenizerBase, reader_name: str) -> None:
    """Fail when ``reader`` (a reward model's tokenizer) would read the special tokens ``writer``'s
    chat template puts into every prompt as plain characters."""
    known = set(reader.get_added_vocab()) | set(reader.all_special_tokens)
    missing = sorted(token for token in template_special_tokens(writer) if token not in known)
    if missing:
        raise ValueError(
            f"{reader_name} and the policy disagree on special tokens: the policy's chat template writes {missing} "
            "into every prompt, which the reward model's tokenizer does not have (it would read them as plain "
            "text); train the reward model with the policy's tokenizer"
        )
