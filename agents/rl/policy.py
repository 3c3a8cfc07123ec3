"""The trainable policy (a causal LM plus a value head) and its frozen reference.

Why a value head on the shared backbone by default: at the sizes we train, a second transformer
doubles the cost of every forward for little gain; ``value_model="separate"`` gives the critic its
own backbone (initialised from the same SFT model) when the shared features fight each other.
Huang et al. (2024) initialise the critic from the reward model; we start it from the SFT model
because a learned RM here may have another architecture or tokenizer, and a rule reward has no
network at all. Log-probs are always computed from temperature-scaled logits, the distribution
the sampler drew from. With LoRA the reference is the same network with the adapter disabled,
so no second copy of the weights is held.
"""

from __future__ import annotations

import contextlib
import copy
import json
import weakref
from pathlib import Path
from typing import Literal, NamedTuple

import torch
from safetensors.torch import save_file
from torch import nn
from transformers import AutoModel, AutoModelForCausalLM, DynamicCache, PreTrainedModel, PreTrainedTokenizerBase

from agents.rl.kernels import fuse_activations
from agents.rl.logprobs import head_logprobs, logits_logprobs, token_logprobs
from agents.rl.sampling import full_attention_cache, group_starts, position_ids_from_mask, prompt_groups
from llm_gym.models import AUTOCAST_DTYPES, check_vocab_match, load_tokenizer

ValueModel = Literal["shared", "separate", "none"]
REFERENCE_FILE = "reference.json"


def disable_dropout(model: nn.Module) -> None:
    """RL needs log-probs that do not change between rollout and update (Huang et al. 2024, #4)."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0


def autocast(device: torch.device, mixed_precision: str) -> contextlib.AbstractContextManager:
    """Autocast on ``device`` in a resolved precision (``resolve_mixed_precision``: "no", "bf16" or "fp16");
    the weights stay fp32, only the forward's matrix multiplies run in the lower precision."""
    if mixed_precision == "no":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=AUTOCAST_DTYPES[mixed_precision])


def check_same_tokenizer(a: PreTrainedTokenizerBase, b: PreTrainedTokenizerBase, a_name: str, b_name: str) -> None:
    """Fail when two models would read the same ids as different text (policy vs reference vs env)."""
    for attr in ("eos_token_id", "pad_token_id", "bos_token_id"):
        if getattr(a, attr) != getattr(b, attr):
            raise ValueError(
                f"{a_name} and {b_name} tokenizers differ: {attr} is {getattr(a, attr)} vs {getattr(b, attr)}; "
                "train from a model that shares the reference's tokenizer"
            )
    va, vb = a.get_vocab(), b.get_vocab()
    if va != vb:
        diff = sorted(set(va.items()) ^ set(vb.items()), key=str)[:3]
        raise ValueError(
            f"{a_name} and {b_name} tokenizers differ: vocabularies of {len(va)} and {len(vb)} tokens "
            f"(first differences {diff}); train from a model that shares the reference's tokenizer"
        )


def sequence_forward(
    model: nn.Module, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, completion_ids: torch.Tensor,
    completion_mask: torch.Tensor, hidden: bool = False, completion_logits: bool = False,
):
    """Forward ``prompt + completion`` once; returns the model output and the completion's first index.

    With ``completion_logits`` the output's logits are only those that predict each completion token,
    (B, T, V): the output layer runs on those positions alone (``logits_to_keep``), so no logits are
    made for the prompt, and no slice of a larger logits tensor is taken, whose gradient would be a
    second full-size (B x tokens x vocab) buffer — what matters with a 150k-token vocabulary.
    """
    P, T = prompt_ids.shape[1], completion_ids.shape[1]
    input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
    mask = torch.cat([prompt_mask, completion_mask], dim=1).long()
    keep = {"logits_to_keep": torch.arange(P - 1, P + T - 1, device=input_ids.device)} if completion_logits else {}
    out = model(input_ids=input_ids, attention_mask=mask, position_ids=position_ids_from_mask(mask),
                output_hidden_states=hidden, **keep)
    return out, P


def shares_prefix(model: nn.Module) -> bool:
    """Whether ``model``'s KV cache rows may be copied to fan one prompt out to its group."""
    config = getattr(model, "config", None)
    return config is not None and full_attention_cache(DynamicCache(config=config))


def completion_hidden(backbone: nn.Module, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                      completion_ids: torch.Tensor, completion_mask: torch.Tensor) -> torch.Tensor:
    """The last hidden states that predict each completion token, (B, T, H), from a backbone
    (``AutoModel``) that returns ``last_hidden_state``.

    When neighbouring rows share a prompt (``prompt_groups``) the prompts are run once per group, their
    KV cache and last hidden state are fanned out to the group's rows (an index copy, differentiable),
    and only the completions are run for every row: the same numbers as one forward of prompt +
    completion, with the prompt's share of the compute divided by the group size.
    """
    P, T = prompt_ids.shape[1], completion_ids.shape[1]
    groups = prompt_groups(prompt_ids, prompt_mask) if T > 0 and shares_prefix(backbone) else None
    if groups is None:
        out, P = sequence_forward(backbone, prompt_ids, prompt_mask, completion_ids, completion_mask)
        return out.last_hidden_state[:, P - 1 : P + T - 1]
    first = group_starts(groups)
    unique_mask = prompt_mask[first].long()
    cache = DynamicCache(config=backbone.config)
    prefix = backbone(input_ids=prompt_ids[first], attention_mask=unique_mask,
                      position_ids=position_ids_from_mask(unique_mask), past_key_values=cache, use_cache=True)
    last = prefix.last_hidden_state[groups, -1:]
    if T == 1:
        return last
    cache.batch_select_indices(groups)
    mask = torch.cat([prompt_mask, completion_mask[:, :-1]], dim=1).long()
    out = backbone(input_ids=completion_ids[:, :-1], attention_mask=mask,
                   position_ids=position_ids_from_mask(mask)[:, P:], past_key_values=cache, use_cache=True)
    return torch.cat([last, out.last_hidden_state], dim=1)


class Scores(NamedTuple):
    """What a scoring pass returns for each completion token: log p (fp32, (B, T)), the entropy (when
    asked) and the last hidden state that predicted the token ((B, T, H), when asked: the shared critic's input)."""

    logprobs: torch.Tensor
    entropy: torch.Tensor | None
    features: torch.Tensor | None


_OUTPUT_LAYERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def output_layer(lm: nn.Module) -> tuple[nn.Module, nn.Linear] | None:
    """The backbone and the linear output layer of a causal LM whose logits are exactly ``head(backbone(x))``.

    Checked once per model on a few tokens, because some architectures change the logits after the
    output layer (soft-capping, scaling); for those the answer is None and the caller asks the model
    for its logits instead. A PEFT model is looked through (its adapters live inside the backbone).
    """
    if lm in _OUTPUT_LAYERS:
        return _OUTPUT_LAYERS[lm]
    base = lm.get_base_model() if hasattr(lm, "get_base_model") else lm
    backbone = getattr(base, getattr(base, "base_model_prefix", ""), None)
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    split = None
    if isinstance(backbone, nn.Module) and type(head) is nn.Linear:
        param = head.weight
        ids = torch.arange(min(8, param.shape[0]), device=param.device)[None]
        mask = torch.ones_like(ids)  # the probe ids may include the pad id: say they are all real tokens
        training = lm.training
        lm.eval()
        with torch.no_grad():
            direct = lm(input_ids=ids, attention_mask=mask).logits.float()
            via_head = head(backbone(input_ids=ids, attention_mask=mask).last_hidden_state).float()
        lm.train(training)
        if direct.shape == via_head.shape and torch.allclose(direct, via_head, atol=1e-4, rtol=1e-4):
            split = (backbone, head)
    _OUTPUT_LAYERS[lm] = split
    return split


def completion_scores(lm: nn.Module, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                      completion_ids: torch.Tensor, completion_mask: torch.Tensor, temperature: float,
                      entropy: bool = False, features: bool = False) -> Scores:
    """Score each completion token under ``lm``: one forward of ``prompt + completion``.

    The output layer runs inside ``head_logprobs`` a chunk of tokens at a time, so no
    (B x tokens x vocab) logits or logits gradient is ever materialised — what decides peak memory
    with a 150k-token vocabulary. Models whose logits are not ``head(hidden)`` make their logits for
    the completion positions only (``logits_to_keep``) and are scored from those.
    """
    T = completion_ids.shape[1]
    split = output_layer(lm)
    if split is None:
        out, P = sequence_forward(lm, prompt_ids, prompt_mask, completion_ids, completion_mask, hidden=features,
                                  completion_logits=True)
        logprobs, ent = logits_logprobs(out.logits, completion_ids, temperature, entropy)
        return Scores(logprobs, ent, out.hidden_states[-1][:, P - 1 : P + T - 1] if features else None)
    backbone, head = split
    hidden = completion_hidden(backbone, prompt_ids, prompt_mask, completion_ids, completion_mask)
    logprobs, ent = head_logprobs(hidden, head.weight, head.bias, completion_ids, temperature, entropy)
    return Scores(logprobs, ent, hidden if features else None)


def label_logprobs(lm: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   labels: torch.Tensor) -> torch.Tensor:
    """log p of every labelled token (HF's convention: ``labels[:, t]`` is predicted from position
    ``t - 1``; -100 is ignored) as a flat fp32 vector — the SFT loss is its negative mean.

    Only the labelled positions reach the output layer, a chunk at a time (``head_logprobs``), so
    SFT on a 150k-token vocabulary never holds (batch x tokens x vocab) logits or their gradient.
    A model wrapped for distributed training (whose forward must run for gradients to sync), or
    one whose logits are not ``head(hidden)``, is scored from its own logits.
    """
    targets = labels[:, 1:]
    keep = targets != -100
    split = output_layer(lm) if isinstance(lm, PreTrainedModel) else None
    if split is None:
        logits = lm(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1]
        return token_logprobs(logits[keep], targets[keep], 1.0)
    backbone, head = split
    hidden = backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state[:, :-1]
    return head_logprobs(hidden[keep], head.weight, head.bias, targets[keep], 1.0)[0]


class ActorCritic(nn.Module):
    """Causal LM + scalar value head; ``forward`` scores a batch of (prompt, completion) pairs.

    ``forward`` returns the completion tokens' ``Scores`` and, unless ``value_model == "none"``, the
    value of the state before each completion token (B, T).
    """

    def __init__(self, lm: PreTrainedModel, value_model: ValueModel = "shared", critic: nn.Module | None = None):
        super().__init__()
        self.lm, self.value_model = lm, value_model
        self.critic = critic
        if value_model != "none":
            width = (critic or lm).config.hidden_size
            self.value_head = nn.Linear(width, 1)
            nn.init.normal_(self.value_head.weight, std=1 / (width + 1) ** 0.5)  # Huang et al. 2024, #9
            nn.init.zeros_(self.value_head.bias)

    def forward(self, prompt_ids, prompt_mask, completion_ids, completion_mask, temperature: float = 1.0,
                entropy: bool = False) -> tuple[Scores, torch.Tensor | None]:
        shared = self.value_model == "shared"
        scores = completion_scores(self.lm, prompt_ids, prompt_mask, completion_ids, completion_mask, temperature,
                                   entropy=entropy, features=shared)
        if self.value_model == "none":
            return scores, None
        if shared:
            features = scores.features
        else:
            features = completion_hidden(self.critic, prompt_ids, prompt_mask, completion_ids, completion_mask)
        return scores, self.value_head(features.float()).squeeze(-1)


def load_actor_critic(
    policy_dir: str | Path, device: torch.device, value_model: ValueModel = "shared", lora_r: int = 0,
    lora_alpha: int = 16,
) -> tuple[ActorCritic, PreTrainedTokenizerBase]:
    """The trainable policy from an HF directory (the SFT model), dropout off, optional LoRA."""
    policy_dir = Path(policy_dir)
    if not policy_dir.is_dir():
        raise FileNotFoundError(f"policy directory not found: {policy_dir}")
    tokenizer = load_tokenizer(policy_dir)
    lm = AutoModelForCausalLM.from_pretrained(policy_dir, dtype=torch.float32)
    check_vocab_match(tokenizer, lm)
    if lora_r > 0:
        try:
            from peft import LoraConfig, get_peft_model
        except ImportError as err:  # optional extra
            raise ImportError("lora_r > 0 needs peft: pip install 'llm-gym[lora]'") from err
        lm = get_peft_model(lm, LoraConfig(r=lora_r, lora_alpha=lora_alpha, target_modules="all-linear",
                                           task_type="CAUSAL_LM"))
    critic = AutoModel.from_pretrained(policy_dir, dtype=torch.float32) if value_model == "separate" else None
    model = ActorCritic(lm, value_model, critic).to(device)
    disable_dropout(model)
    fuse_activations(model)
    return model, tokenizer


class Reference:
    """The frozen start policy the KL penalty is measured against (Huang et al. 2024, #6)."""

    def __init__(self, policy: ActorCritic, reference_dir: str | Path, device: torch.device,
                 policy_tokenizer: PreTrainedTokenizerBase):
        self.policy, self.reference_dir = policy, Path(reference_dir)
        self.uses_adapter = hasattr(policy.lm, "disable_adapter")
        if not self.reference_dir.is_dir():
            raise FileNotFoundError(f"reference model directory not found: {self.reference_dir}")
        check_same_tokenizer(policy_tokenizer, load_tokenizer(self.reference_dir), "policy", "reference")
        if self.uses_adapter:
            self.model = None
        else:
            self.model = AutoModelForCausalLM.from_pretrained(self.reference_dir, dtype=torch.float32).to(device)
            self.model.eval().requires_grad_(False)
            disable_dropout(self.model)
            fuse_activations(self.model)

    @torch.no_grad()
    def logprobs(self, prompt_ids, prompt_mask, completion_ids, completion_mask, temperature: float) -> torch.Tensor:
        args = (prompt_ids, prompt_mask, completion_ids, completion_mask, temperature)
        if self.uses_adapter:
            with self.policy.lm.disable_adapter():
                return completion_scores(self.policy.lm, *args).logprobs
        return completion_scores(self.model, *args).logprobs


def export_policy(model: ActorCritic, tokenizer: PreTrainedTokenizerBase, out_dir: str | Path,
                  reference_dir: str | Path) -> Path:
    """Write the policy as a plain HF directory (LoRA merged), the value head, and where its reference is.

    ``reference.json`` lets ``evaluate`` measure KL to the model training started from.
    """
    out_dir = Path(out_dir)
    lm = model.lm
    if hasattr(lm, "merge_and_unload"):
        lm = copy.deepcopy(lm).merge_and_unload()
    lm.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    if model.value_model != "none":
        save_file({k: v.detach().cpu().contiguous() for k, v in model.value_head.state_dict().items()},
                  str(out_dir / "value_head.safetensors"))
    (out_dir / REFERENCE_FILE).write_text(json.dumps({"reference_dir": str(Path(reference_dir).resolve())}))
    return out_dir


def reference_of(policy_dir: str | Path) -> Path | None:
    """The reference a trained policy recorded, or None for a model that was not trained here."""
    path = Path(policy_dir) / REFERENCE_FILE
    return Path(json.loads(path.read_text())["reference_dir"]) if path.is_file() else None
