"""The KV-cache sampler: same tokens as HF generate, exact log-probs, EOS handling, one forward per token,
and draws that follow softmax(logits / T) exactly (chi-square on fixed logits and through a real model)."""

from __future__ import annotations

import gymnasium
import pytest
import torch
from scipy.stats import chisquare
from rl_helpers import sft_dir  # noqa: F401  (fixture)

import llm_gym  # noqa: F401
from agents.rl.logprobs import token_logprobs
from agents.rl.policy import sequence_forward
from agents.rl import sampling
from agents.rl.sampling import (DrawBuffers, inverse_cdf, outside_top_k, sample_completions, sample_tokens,
                                trim_left_padding, two_level_inverse_cdf)
from llm_gym.models import load_causal_lm


def env_prompts(model_dir, n=16, seed=0):
    """Prompts exactly as the sequence-level vector env lays them out (left-padded into [0, P))."""
    env = gymnasium.make_vec("llm_gym/Arithmetic-v0", num_envs=n, vectorization_mode="vector_entry_point",
                             granularity="sequence", tokenizer=str(model_dir))
    obs, _ = env.reset(seed=seed)
    T = env.single_action_space.shape[0]
    P = obs["input_ids"].shape[1] - T
    return obs["input_ids"][:, :P], obs["attention_mask"][:, :P], T


def test_greedy_matches_hf_generate_on_left_padded_prompts(sft_dir):
    model, tok = load_causal_lm(sft_dir)
    ids, mask, T = env_prompts(sft_dir)
    assert (mask[:, 0] == 0).any(), "the batch should contain left-padded rows"
    ours = sample_completions(model, ids, mask, T, tok.eos_token_id, tok.pad_token_id, temperature=0.0)
    hf = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=T, do_sample=False,
                        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)[:, ids.shape[1]:]
    width = ours.ids.shape[1]
    assert torch.equal(ours.ids, hf[:, :width])
    assert (hf[:, width:] == tok.pad_token_id).all()


def test_logprobs_equal_full_forward_and_rows_stop_at_eos(sft_dir):
    model, tok = load_causal_lm(sft_dir)
    ids, mask, T = env_prompts(sft_dir, n=32)
    gen = torch.Generator().manual_seed(0)
    out = sample_completions(model, ids, mask, T, tok.eos_token_id, tok.pad_token_id, temperature=0.7, generator=gen)
    forward, P = sequence_forward(model, ids, mask, out.ids, out.mask)
    full = token_logprobs(forward.logits[:, P - 1 : P - 1 + out.ids.shape[1]], out.ids, 0.7) * out.mask
    torch.testing.assert_close(out.logprobs, full, atol=1e-4, rtol=1e-4)
    for row, length, ended in zip(out.ids, out.lengths, out.ended):
        if ended:
            assert row[length - 1] == tok.eos_token_id and (row[:length - 1] != tok.eos_token_id).all()
            assert (row[length:] == tok.pad_token_id).all()
        else:
            assert length == T
    assert out.ended.any()
    assert (out.logprobs[out.mask == 0] == 0).all()


def test_the_loop_runs_in_inference_mode_and_its_outputs_train(sft_dir):
    """Inference mode skips autograd bookkeeping while sampling; what comes out must still feed a
    training forward and backward (an inference tensor cannot be saved for backward)."""
    model, tok = load_causal_lm(sft_dir)
    ids, mask, T = env_prompts(sft_dir, n=4)
    modes: list[bool] = []
    hook = model.register_forward_pre_hook(lambda *_: modes.append(torch.is_inference_mode_enabled()))
    out = sample_completions(model, ids, mask, T, tok.eos_token_id, tok.pad_token_id, generator=torch.Generator().manual_seed(0))
    hook.remove()
    assert modes and all(modes)
    assert not any(t.is_inference() for t in (out.ids, out.mask, out.logprobs, out.ended))
    forward, P = sequence_forward(model, ids, mask, out.ids, out.mask)
    token_logprobs(forward.logits[:, P - 1 : P - 1 + out.ids.shape[1]], out.ids, 1.0).sum().backward()
    assert model.get_input_embeddings().weight.grad is not None


def test_one_forward_per_new_token_for_the_whole_batch(sft_dir):
    model, tok = load_causal_lm(sft_dir)
    ids, mask, T = env_prompts(sft_dir, n=64)
    calls = []
    handle = model.register_forward_hook(lambda m, args, kwargs_out: calls.append(1))
    out = sample_completions(model, ids, mask, T, tok.eos_token_id, tok.pad_token_id, temperature=1.0,
                             generator=torch.Generator().manual_seed(1))
    handle.remove()
    assert len(calls) == out.ids.shape[1]  # prefill + one per later token, never per row


def test_sampling_is_seeded_and_top_k_one_is_greedy(sft_dir):
    model, tok = load_causal_lm(sft_dir)
    ids, mask, T = env_prompts(sft_dir)
    args = (model, ids, mask, T, tok.eos_token_id, tok.pad_token_id)
    a = sample_completions(*args, temperature=1.0, generator=torch.Generator().manual_seed(3))
    b = sample_completions(*args, temperature=1.0, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.ids, b.ids)
    greedy = sample_completions(*args, temperature=0.0)
    top1 = sample_completions(*args, temperature=1.0, top_k=1, generator=torch.Generator().manual_seed(4))
    assert torch.equal(greedy.ids, top1.ids)
    logits = torch.tensor([[1.0, 3.0, 2.0, 0.0]])
    assert outside_top_k(logits, 2).tolist() == [[True, False, False, True]]
    assert outside_top_k(logits, 0) is None and outside_top_k(logits, 4) is None


def test_negative_temperature_is_an_error(sft_dir):
    model, tok = load_causal_lm(sft_dir)
    ids, mask, T = env_prompts(sft_dir, n=2)
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        sample_completions(model, ids, mask, T, tok.eos_token_id, tok.pad_token_id, temperature=-1.0)


def chi_square_p(counts: torch.Tensor, probs: torch.Tensor) -> float:
    """p-value of the observed token counts under ``probs`` (cells with no probability must stay empty)."""
    assert (counts[probs == 0] == 0).all(), "a token with probability 0 was drawn"
    keep = probs > 0
    expected = probs[keep].double() / probs[keep].double().sum() * counts.sum()
    return float(chisquare(counts[keep].double().numpy(), expected.numpy()).pvalue)


@pytest.fixture(params=["one level", "two levels"])
def draw(request, monkeypatch):
    """Run a test through each inverse-CDF draw: the two-level one with blocks of 3 entries, so an 8-entry
    vocabulary has two whole blocks and a 2-entry tail."""
    if request.param == "two levels":
        monkeypatch.setattr(sampling, "BLOCK", 3)
        monkeypatch.setattr(sampling, "TWO_LEVEL_FROM", 0)
    return request.param


@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_token_frequencies_follow_softmax_of_logits_over_temperature(temperature, draw):
    """200k draws of one fixed logit row: the counts fit softmax(logits / T) (chi-square, fixed seed) and each
    returned log-prob is log softmax(logits / T) of its token. A draw biased by 1% of a cell fails this."""
    logits = torch.tensor([2.0, 0.5, -1.0, 1.5, 0.0, -3.0, 1.0, 0.25])
    n = 200_000
    tokens, logp = sample_tokens(logits.expand(n, -1), temperature, generator=torch.Generator().manual_seed(0))
    probs = torch.softmax(logits / temperature, -1)
    assert chi_square_p(torch.bincount(tokens, minlength=8), probs) > 1e-3
    torch.testing.assert_close(logp, probs.log()[tokens], atol=1e-6, rtol=0)


def test_token_frequencies_under_top_k_are_the_renormalised_top_k(draw):
    logits = torch.tensor([2.0, 0.5, -1.0, 1.5, 0.0, -3.0, 1.0, 0.25])
    tokens, logp = sample_tokens(logits.expand(100_000, -1), 1.0, top_k=3, generator=torch.Generator().manual_seed(1))
    probs = torch.softmax(logits.masked_fill(outside_top_k(logits[None], 3)[0], float("-inf")), -1)
    assert chi_square_p(torch.bincount(tokens, minlength=8), probs) > 1e-3
    torch.testing.assert_close(logp, torch.log_softmax(logits, -1)[tokens])  # the full distribution's log-prob


def test_biased_sampler_fails_the_frequency_check(draw):
    """The check above has teeth: draws from softmax(logits) judged against softmax(logits / 0.9) fail it."""
    logits = torch.tensor([2.0, 0.5, -1.0, 1.5, 0.0, -3.0, 1.0, 0.25])
    tokens, _ = sample_tokens(logits.expand(200_000, -1), 1.0, generator=torch.Generator().manual_seed(0))
    assert chi_square_p(torch.bincount(tokens, minlength=8), torch.softmax(logits / 0.9, -1)) < 1e-6


@pytest.mark.parametrize("uniform, expected", [(0.0, 6), (1 - 2**-53, 1)])
def test_the_extreme_uniform_draws_never_pick_a_token_of_probability_zero(monkeypatch, draw, uniform, expected):
    """The draw inverts the cumulative distribution at ``(1 - U) * total``: U = 0 lands on the last token
    with probability, U just below 1 on the first, and neither end reaches a masked token, not even in a
    block that has weight (two levels: blocks [0, 1, 2] [3, 4, 5] [6, 7]), nor a block that has none."""
    monkeypatch.setattr(torch, "rand", lambda *shape, **kwargs: torch.full(shape, uniform, dtype=torch.float64))
    inf = float("-inf")
    logits = torch.tensor([[inf, 0.5, 1.0, inf, inf, inf, 0.2, inf]])
    tokens, logp = sample_tokens(logits, 1.0)
    assert tokens.tolist() == [expected]
    torch.testing.assert_close(logp, torch.log_softmax(logits, -1)[0, expected].reshape(1))


def test_the_two_level_draw_follows_the_distribution_across_real_blocks():
    """At the real block size, probability sits on both sides of block boundaries, in the tail block and
    alone in one block: 200k draws fit it (chi-square), and every log-prob is exact."""
    V = 3 * sampling.BLOCK + 500
    logits = torch.full((V,), float("-inf"))
    places = [0, sampling.BLOCK - 1, sampling.BLOCK, 2 * sampling.BLOCK + 7, V - 2, V - 1]
    logits[places] = torch.tensor([0.3, 1.0, -0.5, 2.0, 0.0, 1.2])
    weights = torch.softmax(logits, -1).expand(200_000, -1)
    uniform = torch.rand(len(weights), 1, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    tokens, total = two_level_inverse_cdf(weights, uniform)
    assert chi_square_p(torch.bincount(tokens, minlength=V), torch.softmax(logits, -1)) > 1e-3
    torch.testing.assert_close(total, torch.ones_like(total))


def test_both_draws_pick_the_same_tokens_for_the_same_uniform_numbers():
    """The two-level draw inverts the same cumulative distribution as the one-level one; only rounding at the
    exact boundary between two tokens could tell them apart."""
    generator = torch.Generator().manual_seed(5)
    weights = (torch.randn(512, 3 * sampling.BLOCK + 77, generator=generator) * 3).exp()
    uniform = torch.rand(len(weights), 1, dtype=torch.float64, generator=generator)
    one, one_total = inverse_cdf(weights, uniform)
    two, two_total = two_level_inverse_cdf(weights, uniform)
    assert torch.equal(one, two)
    torch.testing.assert_close(one_total, two_total, rtol=1e-6, atol=0)


def test_kept_buffers_give_what_fresh_tensors_give_as_the_batch_shrinks():
    logits = torch.randn(8, sampling.TWO_LEVEL_FROM + 3, generator=torch.Generator().manual_seed(6))
    buffers = DrawBuffers()
    for rows, temperature in ((8, 1.0), (5, 0.7), (2, 1.0)):
        kept = sample_tokens(logits[:rows], temperature, 2, torch.Generator().manual_seed(rows), buffers)
        fresh = sample_tokens(logits[:rows], temperature, 2, torch.Generator().manual_seed(rows))
        assert torch.equal(kept[0], fresh[0]) and torch.equal(kept[1], fresh[1])
    assert buffers.tensors["weights"].shape[0] == 8  # allocated once, for the first and largest batch


def test_greedy_is_argmax_with_zero_logprob():
    logits = torch.randn(64, 50, generator=torch.Generator().manual_seed(2))
    tokens, logp = sample_tokens(logits, 0.0)
    assert torch.equal(tokens, logits.argmax(-1)) and (logp == 0).all()


def test_first_tokens_of_the_sampler_follow_the_models_distribution(sft_dir):
    """Through the whole sampler (trimmed prompt, window cache, prefill): 20k copies of one prompt, one new
    token each; the counts fit softmax(logits / T) of the model's own next-token logits."""
    model, tok = load_causal_lm(sft_dir)
    ids, mask, _ = env_prompts(sft_dir, n=4)
    row = int((mask.sum(1)).argmin())  # a left-padded row
    n, temperature = 20_000, 1.3
    out = sample_completions(model, ids[row].expand(n, -1), mask[row].expand(n, -1), 1, tok.eos_token_id,
                             tok.pad_token_id, temperature, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        forward, P = sequence_forward(model, ids[row : row + 1], mask[row : row + 1], ids[:1, :0], mask[:1, :0])
    probs = torch.softmax(forward.logits[0, P - 1] / temperature, -1)
    assert chi_square_p(torch.bincount(out.ids[:, 0], minlength=len(probs)), probs) > 1e-3


def test_finished_rows_leave_the_batch(sft_dir):
    """Once a quarter of the rows still sampled have emitted EOS they are dropped from the forward batch,
    and the result is still exactly what HF generate gives (greedy)."""
    model, tok = load_causal_lm(sft_dir)
    ids, mask, T = env_prompts(sft_dir, n=48, seed=3)
    sizes = []
    handle = model.register_forward_hook(lambda m, args, kwargs_out: sizes.append(kwargs_out.logits.shape[0]))
    ours = sample_completions(model, ids, mask, T, tok.eos_token_id, tok.pad_token_id, temperature=0.0)
    handle.remove()
    assert sizes[0] == 48 and min(sizes) < 48, sizes
    assert sizes[-1] >= int((~ours.ended).sum())
    hf = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=T, do_sample=False,
                        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)[:, ids.shape[1]:]
    assert torch.equal(ours.ids, hf[:, : ours.ids.shape[1]])


def test_a_row_stopping_at_any_of_several_stop_ids_leaves_the_batch(sft_dir):
    """EOS listed second (a chat template's end-of-turn token first): rows that emit it still finish early."""
    model, tok = load_causal_lm(sft_dir)
    ids, mask, T = env_prompts(sft_dir, n=48, seed=3)
    other = next(i for i in range(len(tok)) if i not in (tok.eos_token_id, tok.pad_token_id))
    sizes = []
    handle = model.register_forward_hook(lambda m, args, kwargs_out: sizes.append(kwargs_out.logits.shape[0]))
    several = sample_completions(model, ids, mask, T, [other, tok.eos_token_id], tok.pad_token_id, temperature=0.0)
    handle.remove()
    assert min(sizes) < 48, sizes
    one = sample_completions(model, ids, mask, T, tok.eos_token_id, tok.pad_token_id, temperature=0.0)
    assert torch.equal(several.ended, one.ended | torch.isin(several.ids, torch.tensor(other)).any(1))


def test_trim_left_padding_drops_only_columns_that_are_padding_in_every_row():
    ids = torch.tensor([[0, 0, 0, 5, 6], [0, 0, 7, 8, 9]])
    mask = (ids != 0).long()
    trimmed_ids, trimmed_mask = trim_left_padding(ids, mask)
    assert trimmed_ids.tolist() == [[0, 5, 6], [7, 8, 9]] and trimmed_mask.tolist() == [[0, 1, 1], [1, 1, 1]]
    empty = torch.zeros(2, 3, dtype=torch.long)
    assert trim_left_padding(empty, empty)[0].shape == (2, 1)  # an all-padding window keeps one column


@pytest.mark.gpu
@pytest.mark.parametrize("compile", [False, True])
def test_sampler_on_cuda_under_bf16_autocast_matches_a_full_forward(sft_dir, compile):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    model, tok = load_causal_lm(sft_dir, device=torch.device("cuda"))
    ids, mask, T = env_prompts(sft_dir, n=64)
    ids, mask = ids.cuda(), mask.cuda()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = sample_completions(model, ids, mask, T, tok.eos_token_id, tok.pad_token_id, temperature=1.0,
                                 generator=torch.Generator("cuda").manual_seed(0), compile=compile)
        forward, P = sequence_forward(model, ids, mask, out.ids, out.mask)
    full = token_logprobs(forward.logits[:, P - 1 : P - 1 + out.ids.shape[1]], out.ids, 1.0) * out.mask
    assert out.ids.device.type == "cuda" and out.ended.any()
    torch.testing.assert_close(out.logprobs, full, atol=0.1, rtol=0.05)  # bf16 logits: ~3 significant digits


def test_a_group_prefills_its_prompt_once_and_samples_what_one_prefill_per_row_samples(sft_dir, monkeypatch):
    """Four consecutive copies of each prompt (a GRPO batch): the prompt forward runs on the distinct prompts
    only, and the tokens and log-probs equal those of a prefill per row under the same generator."""
    import agents.rl.sampling as sampling

    model, tok = load_causal_lm(sft_dir)
    ids, mask, T = env_prompts(sft_dir, n=8)
    ids, mask = ids.repeat_interleave(4, 0), mask.repeat_interleave(4, 0)
    prefill_rows = []
    model.register_forward_pre_hook(lambda m, a, kw: prefill_rows.append(kw["input_ids"].shape), with_kwargs=True)

    def draw():
        prefill_rows.clear()
        out = sample_completions(model, ids, mask, T, tok.eos_token_id, tok.pad_token_id, temperature=1.0,
                                 generator=torch.Generator().manual_seed(3))
        return out, prefill_rows[0]

    shared, shared_prefill = draw()
    monkeypatch.setattr(sampling, "prompt_groups", lambda ids, mask: None)
    direct, direct_prefill = draw()
    assert shared_prefill[0] == 8 and direct_prefill[0] == 32
    assert torch.equal(shared.ids, direct.ids) and torch.equal(shared.mask, direct.mask)
    torch.testing.assert_close(shared.logprobs, direct.logprobs, atol=1e-5, rtol=1e-5)
    assert len({tuple(row.tolist()) for row in shared.ids}) > 8, "a group's copies draw different completions"


def test_ids_past_the_tokenizer_are_never_sampled_and_the_env_accepts_the_rollout(sft_dir, tmp_path):
    """A model with more output rows than its tokenizer has tokens (as Qwen2's 151,936 for 151,665): rows
    beyond the tokenizer, here made the likeliest, are never sampled, and log-probs are renormalised."""
    from agents.rl.rollout import RolloutEnv

    model, tok = load_causal_lm(sft_dir)
    model.resize_token_embeddings(len(tok) + 8, mean_resizing=False)
    padded = torch.arange(len(tok), len(tok) + 8)
    model.get_output_embeddings().register_forward_hook(lambda module, args, logits: logits.index_fill(-1, padded, 30.0))
    ids, mask, T = env_prompts(sft_dir, n=16)
    free = sample_completions(model, ids, mask, T, tok.eos_token_id, tok.pad_token_id, 1.0,
                              generator=torch.Generator().manual_seed(0))
    assert (free.ids >= len(tok)).any()  # without the cap the padded rows win
    capped = sample_completions(model, ids, mask, T, tok.eos_token_id, tok.pad_token_id, 1.0,
                                generator=torch.Generator().manual_seed(0), vocab_size=len(tok))
    assert (capped.ids < len(tok)).all()
    forward, P = sequence_forward(model, ids, mask, capped.ids, capped.mask)
    within = forward.logits[:, P - 1 : P - 1 + capped.ids.shape[1], : len(tok)]
    torch.testing.assert_close(capped.logprobs, token_logprobs(within, capped.ids, 1.0) * capped.mask, atol=1e-4, rtol=1e-4)
    env = RolloutEnv("llm_gym/Arithmetic-v0", 16, torch.device("cpu"), tok, sft_dir, {})
    rollout = env.rollout(model, list(range(16)), 1.0, 0, torch.Generator().manual_seed(0))
    assert (rollout.completions.ids < len(tok)).all() and len(rollout.texts) == 16
    env.close()


def test_compiled_sampler_draws_what_the_eager_one_draws_before_and_after_a_weight_update(sft_dir):
    """``compile=True`` changes rounding, not the draw: same seed, same completions and log-probs (to fp32
    rounding), through prefill, decoding and rows leaving the batch; and after an in-place weight update (what
    an optimizer step does between rollouts) the compiled forward sees the new weights, not stale ones."""
    model, tok = load_causal_lm(sft_dir)
    model.eval()
    ids, mask, T = env_prompts(sft_dir, n=32)

    def both():
        eager, compiled = (sample_completions(model, ids, mask, T, tok.eos_token_id, tok.pad_token_id, 1.0,
                                              generator=torch.Generator().manual_seed(3), compile=flag)
                           for flag in (False, True))
        assert torch.equal(eager.ids, compiled.ids) and torch.equal(eager.mask, compiled.mask)
        torch.testing.assert_close(eager.logprobs, compiled.logprobs, atol=1e-4, rtol=0)
        return eager

    before = both()
    assert len(set(before.lengths.tolist())) > 1  # rows ended at different tokens: finished rows left the batch
    with torch.no_grad():
        model.lm_head.weight.mul_(3.0)  # the tied embedding too: a different distribution, same shapes
    after = both()
    assert not torch.equal(before.ids, after.ids)
