"""Tiny models and tokenizers built from a config, and safe loading of any local HF directory.

Everything downstream loads with ``from_pretrained(path)``, so a tiny model built here and a real
checkpoint on disk are interchangeable. Nothing here downloads: paths must be local directories.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

if TYPE_CHECKING:
    from transformers import PreTrainedModel

SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<bos>", "eos_token": "<eos>", "unk_token": "<unk>"}
# A minimal chat template so `messages` datasets work with tiny tokenizers as with hub ones.
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)


def train_tokenizer(
    texts: Iterable[str], kind: Literal["char", "bpe"] = "char", vocab_size: int = 512
) -> PreTrainedTokenizerFast:
    """Train a small tokenizer on ``texts``; decoding concatenates tokens exactly (no added spaces).

    ``char``: one token per character seen (deterministic, tiny vocabulary).
    ``bpe``: byte-level BPE with ``vocab_size`` entries (never produces unknown tokens).
    """
    specials = list(SPECIAL_TOKENS.values())
    texts = list(texts)
    if kind == "char":
        alphabet = sorted(set("".join(texts)))
        vocab = {token: i for i, token in enumerate(specials + alphabet)}
        tokenizer = Tokenizer(models.WordLevel(vocab, unk_token=SPECIAL_TOKENS["unk_token"]))
        tokenizer.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
        tokenizer.decoder = decoders.Fuse()
    elif kind == "bpe":
        tokenizer = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS["unk_token"]))
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,  # its progress bar writes blank lines to stdout when not on a terminal
        )
        tokenizer.train_from_iterator(texts, trainer)
    else:
        raise ValueError(f"unknown tokenizer kind {kind!r}; use 'char' or 'bpe'")
    bos = SPECIAL_TOKENS["bos_token"]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, tokenizer.token_to_id(bos))]
    )
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, **SPECIAL_TOKENS)
    fast.chat_template = CHAT_TEMPLATE
    return fast


@dataclass
class TinyModelConfig:
    """Size of a randomly initialised causal LM; the defaults are the ~600k-parameter CPU demo scale."""

    family: Literal["gpt2", "llama"] = "gpt2"
    n_layer: int = 3
    n_embd: int = 128
    n_head: int = 4
    max_positions: int = 256
    seed: int = 0


def build_tiny_model(tokenizer: PreTrainedTokenizerBase, config: TinyModelConfig | None = None) -> PreTrainedModel:
    """A random-init causal LM whose vocabulary and special-token ids match ``tokenizer``."""
    config = config or TinyModelConfig()
    ids = {
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    if None in ids.values():
        raise ValueError(f"tokenizer must define bos, eos and pad tokens; got {ids}")
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM  # see load_causal_lm

    torch.manual_seed(config.seed)
    if config.family == "gpt2":
        # No dropout: RL needs identical log-probs at sampling and update time (Huang et al. 2024).
        hf_config = GPT2Config(
            n_layer=config.n_layer,
            n_embd=config.n_embd,
            n_head=config.n_head,
            n_positions=config.max_positions,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            **ids,
        )
        return GPT2LMHeadModel(hf_config)
    if config.family == "llama":
        hf_config = LlamaConfig(
            num_hidden_layers=config.n_layer,
            hidden_size=config.n_embd,
            intermediate_size=4 * config.n_embd,
            num_attention_heads=config.n_head,
            num_key_value_heads=config.n_head,
            max_position_embeddings=config.max_positions,
            **ids,
        )
        return LlamaForCausalLM(hf_config)
    raise ValueError(f"unknown model family {config.family!r}; use 'gpt2' or 'llama'")


def save_tiny(
    out_dir: str | Path,
    texts: Iterable[str],
    tokenizer_kind: Literal["char", "bpe"] = "char",
    config: TinyModelConfig | None = None,
) -> Path:
    """Train a tokenizer on ``texts``, build a tiny model for it and ``save_pretrained`` both to ``out_dir``."""
    out_dir = Path(out_dir)
    tokenizer = train_tokenizer(texts, kind=tokenizer_kind)
    model = build_tiny_model(tokenizer, config)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def ensure_pad_token(tokenizer: PreTrainedTokenizerBase, where: str = "tokenizer") -> PreTrainedTokenizerBase:
    """Pad with the eos token when the tokenizer has no pad token (GPT-2 and Llama ship without one).

    Shared by the policy's and the learned reward model's tokenizers, so a directory that works as
    a policy also works as a reward model.
    """
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token_id is None:
            raise ValueError(f"{where} has neither a pad nor an eos token; set one before use")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "vocab.txt", "tokenizer.model", "spiece.model")


def load_tokenizer(source: str | Path | PreTrainedTokenizerBase, trust_remote_code: bool = False):
    """A tokenizer object, or one loaded from a local directory (pad token ensured, eos required)."""
    if isinstance(source, PreTrainedTokenizerBase):
        tokenizer = source
    else:
        path = Path(source)
        if not path.is_dir():
            raise FileNotFoundError(f"tokenizer directory not found: {path}")
        if not any((path / name).is_file() for name in TOKENIZER_FILES):
            # transformers would return an empty tokenizer that encodes every text as no ids
            raise FileNotFoundError(f"no tokenizer files in {path} (none of {', '.join(TOKENIZER_FILES)}); save the "
                                    "tokenizer next to the model with tokenizer.save_pretrained(dir)")
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    ensure_pad_token(tokenizer, f"tokenizer {tokenizer.name_or_path!r}")
    if tokenizer.eos_token_id is None:
        raise ValueError("tokenizer has no eos token: episodes could never terminate")
    return tokenizer


def check_vocab_match(tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel) -> None:
    """Fail if the model cannot embed every token id the tokenizer can produce."""
    model_vocab = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > model_vocab:
        raise ValueError(
            f"tokenizer/model vocabulary mismatch: tokenizer has {len(tokenizer)} tokens but the model "
            f"embeds only {model_vocab}; load the tokenizer saved with this model"
        )


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
MixedPrecision = Literal["auto", "no", "bf16", "fp16"]
MIXED_PRECISION_HELP = ("forwards under autocast with fp32 weights and optimizer state: bf16, fp16 (loss-scaled) or no; "
                        "auto = bf16 on a CUDA GPU that has it, fp16 on older GPUs, none on CPU")
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; asking for CUDA on a machine without it is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} requested but CUDA is not available here; use 'cpu' or 'auto'")
    return device


def resolve_mixed_precision(mixed_precision: str, device: str | torch.device) -> Literal["no", "bf16", "fp16"]:
    """What ``mixed_precision`` means on ``device``: ``"auto"`` is bf16 on a CUDA GPU that supports it, fp16 on
    older GPUs and none on the CPU (where bf16 autocast is slower than fp32 at small sizes); an explicit
    choice is kept on any device (fp16, which needs loss scaling, only on CUDA), so CPU runs can exercise
    the bf16 path when asked."""
    if mixed_precision == "auto":
        if torch.device(device).type != "cuda":
            return "no"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if mixed_precision not in ("no", *AUTOCAST_DTYPES):
        raise ValueError(f"mixed_precision must be 'auto', 'no', 'bf16' or 'fp16', got {mixed_precision!r}")
    if mixed_precision == "fp16" and torch.device(device).type != "cuda":  # accelerate scales fp16 losses on CUDA only
        raise ValueError(f"mixed_precision 'fp16' needs CUDA (its loss scaling runs there), got device "
                         f"{str(device)!r}; use 'bf16' or 'no'")
    return mixed_precision


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype | str | None:
    """A torch dtype from its name (``"bfloat16"``...); ``"auto"`` (the checkpoint's own) and None pass through."""
    if dtype is None or dtype == "auto" or isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)} or 'auto', got {dtype!r}")
    return DTYPES[dtype]


def load_causal_lm(
    path: str | Path,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype | None = None,
    trust_remote_code: bool = False,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a local causal LM and its tokenizer (safetensors preferred), checking they match.

    ``device``: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"auto"``; ``dtype``: a torch dtype or its
    name (``"bfloat16"``), ``"auto"`` for the checkpoint's, None for float32.
    """
    # transformers' modelling stack is imported here, not with this module: it takes longer to import than
    # torch, and a process that only runs envs (a vector env's worker, a rule-scored env) never needs it
    from transformers import AutoModelForCausalLM

    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"model directory not found: {path}")
    tokenizer = load_tokenizer(path, trust_remote_code=trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=resolve_dtype(dtype), trust_remote_code=trust_remote_code, use_safetensors=None
    ).to(resolve_device(device))
    check_vocab_match(tokenizer, model)
    return model, tokenizer
