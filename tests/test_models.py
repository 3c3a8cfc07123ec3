"""Tiny tokenizers/models: exact round trips, save/load, vocabulary checks, bad input."""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch

import llm_gym
import llm_gym.cli
from llm_gym.models import (
    TinyModelConfig,
    build_tiny_model,
    check_vocab_match,
    load_causal_lm,
    load_tokenizer,
    train_tokenizer,
)


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_tokenizer_round_trips_exactly(kind):
    texts = ["12+34=46", "reverse abc=cba", "the cat likes tea."] * 20
    tokenizer = train_tokenizer(texts, kind=kind, vocab_size=280)
    for text in ["12+34=", " the  cat.", "cba"]:
        ids = tokenizer(text)["input_ids"]
        assert ids[0] == tokenizer.bos_token_id
        assert tokenizer.decode(ids, skip_special_tokens=True) == text
    assert None not in (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.bos_token_id)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_tiny_model_save_and_load(tmp_path, family):
    tokenizer = train_tokenizer(["0123456789+="])
    model = build_tiny_model(tokenizer, TinyModelConfig(family=family, n_layer=1, n_embd=16, n_head=2))
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    loaded, loaded_tokenizer = load_causal_lm(tmp_path)
    ids = loaded_tokenizer("1+2=", return_tensors="pt")["input_ids"]
    torch.testing.assert_close(loaded(ids).logits, model(ids).logits)


def test_cli_tiny_builds_a_loadable_model_for_env(tmp_path):
    assert llm_gym.cli.main(["tiny", "--env_id", "llm_gym/Count-v0", "--output_dir", str(tmp_path), "--n_layer", "1", "--n_embd", "16"]) == 0
    env = gym.make("llm_gym/Count-v0", tokenizer=str(tmp_path))
    obs, _ = env.reset(seed=0)
    model, _ = load_causal_lm(tmp_path)
    assert model(torch.as_tensor(obs["input_ids"])[None]).logits.shape[-1] == env.action_space.n


def test_vocabulary_mismatch_is_named(tiny_model_dir):
    model, _ = load_causal_lm(tiny_model_dir)
    bigger = train_tokenizer(["abcdefghijklmnopqrstuvwxyz0123456789+-=:.,' "])
    with pytest.raises(ValueError, match="tokenizer/model vocabulary mismatch"):
        check_vocab_match(bigger, model)


def test_missing_directories_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="model directory not found"):
        load_causal_lm(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="tokenizer directory not found"):
        load_tokenizer(tmp_path / "nope")


def test_a_model_directory_without_tokenizer_files_is_an_error_not_an_empty_tokenizer(tiny_model_dir, tmp_path):
    """transformers loads such a directory as a 1-token tokenizer that encodes every text as no ids."""
    bare = tmp_path / "bare"
    load_causal_lm(tiny_model_dir)[0].save_pretrained(bare)
    with pytest.raises(FileNotFoundError, match=f"no tokenizer files in {bare}"):
        load_causal_lm(bare)


def test_bad_env_inputs_are_named():
    with pytest.raises(gym.error.NameNotFound, match="Nope"):
        gym.make("llm_gym/Nope-v0")
    with pytest.raises(KeyError, match="unknown task 'nope'"):
        gym.make("llm_gym/Arithmetic-v0", task="nope")
    env = gym.make("llm_gym/Arithmetic-v0", max_prompt_tokens=3)
    with pytest.raises(ValueError, match="does not fit max_prompt_tokens=3"):
        env.reset(seed=0)
    env = gym.make("llm_gym/Arithmetic-v0")
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"outside the vocabulary \[0, "):
        env.step(10_000)
    with pytest.raises(ValueError, match="granularity must be"):
        gym.make("llm_gym/Arithmetic-v0", granularity="word")
