"""Text -> token ids for the envs, refusing text the tokenizer cannot represent.

Why: a tokenizer maps characters outside its vocabulary to its unknown token, so an unencodable
prompt or completion would silently become a different text, and the episode would be scored on
what was never written. Every text an env tokenizes (prompts, multi-turn replies, string actions)
goes through ``encode``.
"""

from __future__ import annotations

from collections.abc import Sequence

from transformers import PreTrainedTokenizerBase

from llm_gym.tokenization import encode_completions, encode_prompts


def describe_tokenizer(tokenizer: PreTrainedTokenizerBase) -> str:
    """A short name for error messages: class, directory (if any) and vocabulary size."""
    where = f" from {tokenizer.name_or_path!r}" if tokenizer.name_or_path else ""
    return f"{type(tokenizer).__name__}{where} ({len(tokenizer)} tokens)"


def encode(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], what: str, add_special_tokens: bool = True
) -> list[list[int]]:
    """Token ids of each text; a ``ValueError`` naming the characters and the tokenizer if any text
    holds characters that encode to the unknown token. With ``add_special_tokens`` the text is a
    prompt (``encode_prompts``: special tokens once, no second BOS after a template's), else a
    completion or reply (``encode_completions``)."""
    rows = (encode_prompts if add_special_tokens else encode_completions)(tokenizer, list(texts))
    unk = tokenizer.unk_token_id
    if unk is None:
        return rows
    for text, row in zip(texts, rows):
        if unk in row:
            bad = sorted(c for c in set(text) if unk in tokenizer(c, add_special_tokens=False)["input_ids"])
            if bad:
                raise ValueError(
                    f"{what} {text[:80]!r} has characters the tokenizer cannot encode: "
                    f"{', '.join(repr(c) for c in bad)} (tokenizer {describe_tokenizer(tokenizer)}); "
                    "use a tokenizer whose vocabulary covers them (e.g. byte-level BPE) or remove them"
                )
    return rows
