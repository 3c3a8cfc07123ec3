"""Chunked log-probs and entropies: equal to the unchunked formulas (values and gradients), from logits or from
hidden states through the output layer; an update makes no (batch x tokens x vocab) tensor at all; the fused
GELU swap leaves a model's outputs unchanged."""

from __future__ import annotations

import pytest
import torch
from rl_helpers import sft_dir  # noqa: F401  (fixture)
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from transformers import GPT2Config, GPT2LMHeadModel, GraniteConfig, GraniteForCausalLM

import agents.rl.logprobs as logprobs_module
from agents.rl.kernels import fuse_activations
from agents.rl.logprobs import head_logprobs, logits_logprobs, token_logprobs
import agents.rl.policy as policy_module
from agents.rl.policy import ActorCritic, completion_scores, output_layer, sequence_forward
from llm_gym.models import load_causal_lm


def reference_logprobs(logits, tokens, temperature):
    scaled = logits.float() / (temperature if temperature > 0 else 1.0)
    return torch.log_softmax(scaled, -1).gather(-1, tokens[..., None]).squeeze(-1)


def reference_entropy(logits, temperature):
    logp = torch.log_softmax(logits.float() / (temperature if temperature > 0 else 1.0), -1)
    return -(logp.exp() * logp).sum(-1)


@pytest.mark.parametrize("temperature", [1.0, 0.7, 0.0])
@pytest.mark.parametrize("chunk_tokens", [1, 7, 1000])
def test_chunked_values_and_gradients_equal_the_unchunked_formulas(monkeypatch, temperature, chunk_tokens):
    """A strided slice of the logits (as the trainers pass them), several chunk sizes (one token, uneven, whole)."""
    B, T, V = 3, 20, 50
    monkeypatch.setattr(logprobs_module, "CHUNK_ELEMENTS", B * V * chunk_tokens)
    gen = torch.Generator().manual_seed(0)
    full = (3 * torch.randn(B, T + 4, V, generator=gen)).requires_grad_(True)
    tokens = torch.randint(0, V, (B, T), generator=gen)
    weights = torch.randn(2, B, T, generator=gen)

    def loss_and_grad(fn, with_logprob=True):
        full.grad = None
        lp, ent = fn(full[:, 3 : 3 + T])
        terms = ([weights[0] * lp] if with_logprob else []) + ([] if ent is None else [weights[1] * ent])
        sum(terms).sum().backward()
        return lp.detach(), None if ent is None else ent.detach(), full.grad.clone()

    def reference(logits):
        return reference_logprobs(logits, tokens, temperature), reference_entropy(logits, temperature)

    def close(ours, ref):
        for a, b in zip(ours, ref):
            if a is not None:
                torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)

    close(loss_and_grad(lambda logits: logits_logprobs(logits, tokens, temperature, entropy=True)),
          loss_and_grad(reference))
    # the log-prob alone (no entropy is made), and the entropy alone (the log-prob's gradient is None in backward)
    alone = loss_and_grad(lambda logits: (token_logprobs(logits, tokens, temperature), None))
    assert alone[1] is None
    close(alone, loss_and_grad(lambda logits: (reference(logits)[0], None)))
    close(loss_and_grad(lambda logits: logits_logprobs(logits, tokens, temperature, entropy=True), with_logprob=False),
          loss_and_grad(reference, with_logprob=False))


def test_no_full_size_fp32_copy_is_saved_for_backward():
    """Autograd keeps only the logits themselves (and per-token outputs): with bf16 logits, nothing of
    (B, T, V) fp32 size is saved, where log_softmax(logits.float()) would save two such buffers."""
    B, T, V = 2, 16, 1000
    logits = torch.randn(B, T, V).bfloat16().requires_grad_(True)
    tokens = torch.randint(0, V, (B, T))
    saved: list[torch.Tensor] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        sum(t.sum() for t in logits_logprobs(logits, tokens, 0.8, entropy=True)).backward()
    big = [t for t in saved if t.numel() >= B * T * V]
    assert big and all(t.dtype == torch.bfloat16 for t in big), [(t.dtype, t.shape) for t in saved]
    assert logits.grad.dtype == torch.bfloat16


def test_fused_activations_change_speed_not_outputs(sft_dir):
    model, _ = load_causal_lm(sft_dir)
    ids = torch.randint(3, len(model.get_input_embeddings().weight), (4, 12), generator=torch.Generator().manual_seed(0))
    before = model(input_ids=ids).logits
    assert fuse_activations(model) == model.config.n_layer
    torch.testing.assert_close(model(input_ids=ids).logits, before, atol=1e-5, rtol=1e-5)
    assert fuse_activations(model) == 0  # idempotent


@pytest.mark.gpu
def test_chunked_logprobs_on_cuda_bf16_match_fp32():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    gen = torch.Generator("cuda").manual_seed(0)
    logits = torch.randn(4, 64, 32_000, device="cuda", generator=gen)
    tokens = torch.randint(0, 32_000, (4, 64), device="cuda", generator=gen)
    half = logits.bfloat16()
    logp, entropy = logits_logprobs(half, tokens, 1.0, entropy=True)
    torch.testing.assert_close(logp, reference_logprobs(half, tokens, 1.0), atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(entropy, reference_entropy(half, 1.0), atol=1e-4, rtol=1e-5)


def reference_head(hidden, weight, bias, tokens, temperature):
    logits = torch.nn.functional.linear(hidden, weight, bias)
    return reference_logprobs(logits, tokens, temperature), reference_entropy(logits, temperature)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("chunk_rows", [1, 7, 1000])
@pytest.mark.parametrize("with_bias", [True, False])
def test_head_logprobs_equal_the_formulas_from_materialised_logits(monkeypatch, temperature, chunk_rows, with_bias):
    """Values and gradients (hidden, weight, bias) of log p and entropy made from hidden states a chunk at a time."""
    B, T, H, V = 3, 11, 8, 50
    monkeypatch.setattr(logprobs_module, "CHUNK_ELEMENTS", V * chunk_rows)
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(B, T, H, generator=gen).requires_grad_(True)
    weight = torch.randn(V, H, generator=gen).requires_grad_(True)
    bias = torch.randn(V, generator=gen).requires_grad_(True) if with_bias else None
    tokens = torch.randint(0, V, (B, T), generator=gen)
    mix = torch.randn(2, B, T, generator=gen)

    def run(fn):
        for t in (hidden, weight, bias):
            if t is not None:
                t.grad = None
        lp, ent = fn(hidden, weight, bias, tokens, temperature)
        (mix[0] * lp + mix[1] * ent).sum().backward()
        return [lp.detach(), ent.detach()] + [t.grad.clone() for t in (hidden, weight, bias) if t is not None]

    ours = run(lambda *a: head_logprobs(*a, entropy=True))
    for a, b in zip(ours, run(reference_head)):  # the weight gradient sums over chunks: fp32 rounding differs
        torch.testing.assert_close(a, b, atol=5e-5, rtol=1e-4)
    # without an entropy the log-prob gradient alone flows
    lp, ent = head_logprobs(hidden, weight, bias, tokens, temperature)
    assert ent is None
    hidden.grad = None
    lp.sum().backward()
    ref_lp, _ = reference_head(hidden, weight, bias, tokens, temperature)
    expected = torch.autograd.grad(ref_lp.sum(), hidden)[0]
    torch.testing.assert_close(hidden.grad, expected, atol=1e-5, rtol=1e-5)
    # an entropy term alone (the log-prob's gradient is None in backward)
    _, ent = head_logprobs(hidden, weight, bias, tokens, temperature, entropy=True)
    hidden.grad = weight.grad = None
    (mix[1] * ent).sum().backward()
    _, ref_ent = reference_head(hidden, weight, bias, tokens, temperature)
    for got, want in zip((hidden.grad, weight.grad), torch.autograd.grad((mix[1] * ref_ent).sum(), (hidden, weight))):
        torch.testing.assert_close(got, want, atol=5e-5, rtol=1e-4)


HEAD_MEMORY = """
import resource, torch
from agents.rl.logprobs import CHUNK_ELEMENTS, head_logprobs
N, H, V = 256, 64, 151936
hidden = torch.randn(N, H, requires_grad=True)
weight = (torch.randn(V, H) * 0.02).requires_grad_()
tokens = torch.randint(0, V, (N,))
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
logp, ent = head_logprobs(hidden, weight, None, tokens, 1.0, entropy=True)
(logp.sum() + ent.sum()).backward()
grad_bytes = weight.numel() * 4
chunk_bytes = (CHUNK_ELEMENTS // V) * V * 4
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base * 1024 - grad_bytes) / chunk_bytes)
"""


def test_head_logprobs_keeps_few_chunk_sized_buffers_alive():
    """Peak memory of a forward and backward with entropy, in chunks of logits beyond the weight's gradient,
    read as the process's peak RSS in a fresh interpreter (64 MiB chunks are mmap-ed, so freed at once):
    about 1.6 with two buffers per pass reused by every chunk; a fresh tensor per operation reached 2.9,
    and the written-out formulas (z, log p, p, g and their products) 6."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", HEAD_MEMORY], capture_output=True, text=True, check=True)
    assert float(done.stdout) < 2.3, done.stdout


class LargestTensor(TorchDispatchMode):
    """Records the largest tensor any op makes (forward and backward): a (B x T x V) buffer cannot hide."""

    def __init__(self):
        super().__init__()
        self.numel, self.op = 0, None

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.numel() > self.numel:
                self.numel, self.op = t.numel(), str(func)
        return out


def tiny_lm(vocab: int, logits_scaling: float | None = None):
    torch.manual_seed(0)
    if logits_scaling is None:
        return GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_embd=16, n_layer=1, n_head=2, n_positions=64)).eval()
    return GraniteForCausalLM(GraniteConfig(vocab_size=vocab, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                            num_attention_heads=2, num_key_value_heads=2,
                                            logits_scaling=logits_scaling)).eval()


def batch(vocab: int, B: int = 4, P: int = 3, T: int = 32):
    gen = torch.Generator().manual_seed(1)
    prompt, completion = torch.randint(0, vocab, (B, P), generator=gen), torch.randint(0, vocab, (B, T), generator=gen)
    prompt_mask, completion_mask = torch.ones(B, P, dtype=torch.long), torch.ones(B, T, dtype=torch.long)
    prompt_mask[0, 0] = 0  # one left-padded prompt
    return prompt, prompt_mask, completion, completion_mask


@pytest.mark.parametrize("logits_scaling", [None, 4.0])
def test_completion_scores_equal_the_models_own_logits(logits_scaling):
    """From hidden states through the output layer (GPT-2), or from the model's logits where it scales them
    after the output layer (Granite): either way the log-probs are those of the model's logits."""
    vocab, temperature = 97, 0.7
    lm = tiny_lm(vocab, logits_scaling)
    assert (output_layer(lm) is None) == (logits_scaling is not None)
    prompt, prompt_mask, completion, completion_mask = batch(vocab)
    scores = completion_scores(lm, prompt, prompt_mask, completion, completion_mask, temperature, entropy=True,
                               features=True)
    out, P = sequence_forward(lm, prompt, prompt_mask, completion, completion_mask, hidden=True)
    logits = out.logits[:, P - 1 : -1]
    torch.testing.assert_close(scores.logprobs, reference_logprobs(logits, completion, temperature), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(scores.entropy, reference_entropy(logits, temperature), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(scores.features, out.hidden_states[-1][:, P - 1 : -1], atol=1e-5, rtol=1e-5)


def test_an_update_never_makes_a_batch_by_tokens_by_vocab_tensor(monkeypatch):
    """Policy log-probs, entropy and values, forward and backward: the largest tensor is far below one
    (B x T x V) buffer. The detector itself sees such a buffer when the model makes its logits."""
    vocab, (B, T) = 5000, (4, 32)
    monkeypatch.setattr(logprobs_module, "CHUNK_ELEMENTS", 8 * vocab)
    policy = ActorCritic(tiny_lm(vocab))
    prompt, prompt_mask, completion, completion_mask = batch(vocab, B=B, T=T)
    with LargestTensor() as seen:
        scores, values = policy(prompt, prompt_mask, completion, completion_mask, 1.0, entropy=True)
        (scores.logprobs.sum() + scores.entropy.sum() + values.sum()).backward()
    assert seen.numel < B * T * vocab / 4, (seen.numel, seen.op)
    with LargestTensor() as direct:
        policy.lm(input_ids=torch.cat([prompt, completion], 1)).logits.sum().backward()
    assert direct.numel >= B * T * vocab


def grouped_batch(vocab: int, group: int = 3):
    """Three prompts of different lengths, left-padded, each repeated ``group`` times in a row, with
    completions of different lengths (right-padded) and one completion of a single token."""
    gen = torch.Generator().manual_seed(2)
    P, T = 5, 6
    lengths, ends = [5, 3, 1], [6, 4, 1, 6, 2, 5, 3, 6, 1]
    prompt = torch.randint(1, vocab, (3, P), generator=gen).repeat_interleave(group, 0)
    prompt_mask = torch.stack([torch.arange(P) >= P - n for n in lengths]).long().repeat_interleave(group, 0)
    prompt = prompt * prompt_mask
    completion = torch.randint(1, vocab, (3 * group, T), generator=gen)
    completion_mask = (torch.arange(T)[None] < torch.tensor(ends[: 3 * group])[:, None]).long()
    return prompt, prompt_mask, completion * completion_mask, completion_mask


def llama_lm(vocab: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2)).eval()


@pytest.mark.parametrize("make_lm", [tiny_lm, llama_lm], ids=["gpt2", "llama"])
@pytest.mark.parametrize("value_model", ["shared", "separate"])
def test_a_shared_prompt_is_run_once_with_the_same_values_and_gradients(make_lm, value_model):
    """Rows that repeat the prompt before them (a GRPO group) run the prompt once and fan its KV cache out:
    log-probs, entropy, values and every parameter gradient equal those of one forward per row, and the
    backbone sees the prompt tokens once per group."""
    vocab = 61
    prompt, prompt_mask, completion, completion_mask = grouped_batch(vocab)
    assert policy_module.prompt_groups(prompt, prompt_mask).tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert policy_module.prompt_groups(prompt[::3], prompt_mask[::3]) is None

    def run(share: bool):
        torch.manual_seed(0)
        lm = make_lm(vocab)
        policy = ActorCritic(lm, value_model, critic=make_lm(vocab).base_model if value_model == "separate" else None)
        output_layer(policy.lm)  # its one-off check forward is not counted
        tokens_seen = []
        hook = policy.lm.base_model.register_forward_pre_hook(
            lambda module, args, kwargs: tokens_seen.append(kwargs["input_ids"].numel()), with_kwargs=True)
        with pytest.MonkeyPatch.context() as patch:
            if not share:
                patch.setattr(policy_module, "prompt_groups", lambda ids, mask: None)
            scores, values = policy(prompt, prompt_mask, completion, completion_mask, 0.8, entropy=True)
        hook.remove()
        mask = completion_mask.float()
        ((scores.logprobs + 0.3 * scores.entropy + values) * mask).sum().backward()
        grads = {name: p.grad.clone() for name, p in policy.named_parameters() if p.grad is not None}
        return [x * mask for x in (scores.logprobs, scores.entropy, values)], grads, sum(tokens_seen)

    shared, shared_grads, shared_tokens = run(True)
    direct, direct_grads, direct_tokens = run(False)
    for a, b in zip(shared, direct):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert shared_grads.keys() == direct_grads.keys() and len(direct_grads) > 10
    for name in direct_grads:
        torch.testing.assert_close(shared_grads[name], direct_grads[name], atol=1e-5, rtol=1e-4, msg=name)
    P, T = prompt.shape[1], completion.shape[1]
    assert direct_tokens == 9 * (P + T) and shared_tokens == 3 * P + 9 * (T - 1)
