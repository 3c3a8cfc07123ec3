"""Three tokenizer families built offline, shaped like the hub checkpoints people fine-tune.

- ``gpt2``: byte-level BPE, ``<|endoftext|>`` as BOS/EOS, no pad token, no chat template, no BOS added;
- ``llama``: byte-level BPE, a post-processor that adds ``<|begin_of_text|>``, a Llama-3-style
  template that renders ``{{ bos_token }}`` and ends turns with ``<|eot_id|>`` (the EOS), and a
  generation config whose ``eos_token_id`` is a list (``<|end_of_text|>``, ``<|eot_id|>``);
- ``qwen``: byte-level BPE, ChatML (``<|im_start|>``/``<|im_end|>``, EOS ``<|im_end|>``), no BOS,
  pad ``<|endoftext|>``, generation config ``eos_token_id`` = [``<|im_end|>``, ``<|endoftext|>``].

Each comes with a tiny random-init causal LM of its own architecture (GPT-2, Llama, Qwen2) saved
next to the tokenizer, so ``load_causal_lm(dir)`` and every trainer load it like a hub directory.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    GenerationConfig,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

FAMILIES = ("gpt2", "llama", "qwen")

LLAMA_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIALS = {
    "gpt2": ["<|endoftext|>"],
    "llama": ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
    "qwen": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
}


def _bpe(texts: Iterable[str], specials: list[str], vocab_size: int) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(list(texts), trainer)
    return tokenizer


def pad_vocabulary(tokenizer: Tokenizer, size: int) -> Tokenizer:
    """The same BPE with unreachable filler entries up to ``size`` ids (a 150k vocabulary without 150k merges)."""
    data = tokenizer.model
    vocab = dict(tokenizer.get_vocab(with_added_tokens=False))
    merges = [tuple(m) if not isinstance(m, str) else tuple(m.split(" ")) for m in _merges(tokenizer)]
    n_special = len(tokenizer.get_vocab(with_added_tokens=True)) - len(vocab)
    for i in range(size - n_special - len(vocab)):
        vocab[f"ĠĠfill{i}"] = len(vocab) + n_special
    padded = Tokenizer(type(data)(vocab=vocab, merges=merges))
    padded.pre_tokenizer, padded.decoder = tokenizer.pre_tokenizer, tokenizer.decoder
    return padded


def _merges(tokenizer: Tokenizer) -> list:
    import json

    return json.loads(tokenizer.to_str())["model"]["merges"]


def build_tokenizer(family: str, texts: Iterable[str], vocab_size: int = 400, total_vocab: int | None = None
                    ) -> tuple[PreTrainedTokenizerFast, GenerationConfig]:
    """A ``PreTrainedTokenizerFast`` of ``family`` trained on ``texts``, and the generation config that goes with it."""
    specials = SPECIALS[family]
    raw = _bpe(texts, specials, vocab_size)
    if total_vocab is not None:
        raw = pad_vocabulary(raw, total_vocab)
        raw.add_special_tokens(specials)
    if family == "gpt2":
        fast = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                       unk_token="<|endoftext|>")
        return fast, GenerationConfig(bos_token_id=fast.eos_token_id, eos_token_id=fast.eos_token_id)
    if family == "llama":
        bos = "<|begin_of_text|>"
        raw.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, raw.token_to_id(bos))]
        )
        fast = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token=bos, eos_token="<|eot_id|>")
        fast.chat_template = LLAMA_TEMPLATE
        stop = [raw.token_to_id("<|end_of_text|>"), raw.token_to_id("<|eot_id|>")]
        return fast, GenerationConfig(bos_token_id=fast.bos_token_id, eos_token_id=stop)
    if family == "qwen":
        fast = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|im_end|>", pad_token="<|endoftext|>")
        fast.chat_template = CHATML_TEMPLATE
        stop = [raw.token_to_id("<|im_end|>"), raw.token_to_id("<|endoftext|>")]
        return fast, GenerationConfig(eos_token_id=stop, pad_token_id=fast.pad_token_id)
    raise ValueError(f"unknown tokenizer family {family!r}; use one of {FAMILIES}")


def build_model(family: str, tokenizer: PreTrainedTokenizerFast, generation_config: GenerationConfig,
                width: int = 32, layers: int = 1, seed: int = 0):
    """A random-init causal LM of the family's architecture with ``tokenizer``'s vocabulary."""
    torch.manual_seed(seed)
    ids = {"vocab_size": len(tokenizer), "bos_token_id": tokenizer.bos_token_id,
           "eos_token_id": generation_config.eos_token_id, "pad_token_id": tokenizer.pad_token_id}
    if family == "gpt2":
        config = GPT2Config(n_layer=layers, n_embd=width, n_head=2, n_positions=256, resid_pdrop=0.0, embd_pdrop=0.0,
                            attn_pdrop=0.0, **ids)
        model = GPT2LMHeadModel(config)
    elif family == "llama":
        config = LlamaConfig(num_hidden_layers=layers, hidden_size=width, intermediate_size=2 * width,
                             num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256, **ids)
        model = LlamaForCausalLM(config)
    else:
        config = Qwen2Config(num_hidden_layers=layers, hidden_size=width, intermediate_size=2 * width,
                             num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
                             tie_word_embeddings=True, **ids)
        model = Qwen2ForCausalLM(config)
    model.generation_config = generation_config
    return model


def save_family(out_dir: Path, family: str, texts: Iterable[str], total_vocab: int | None = None, width: int = 32,
                layers: int = 1) -> Path:
    """Tokenizer + tiny model + generation config of ``family`` in ``out_dir`` (a ``from_pretrained`` directory)."""
    tokenizer, generation = build_tokenizer(family, texts, total_vocab=total_vocab)
    model = build_model(family, tokenizer, generation, width=width, layers=layers)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return Path(out_dir)
