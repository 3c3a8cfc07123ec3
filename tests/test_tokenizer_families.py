"""GPT-2-, Llama- and Qwen-style tokenizers (built offline) through env -> SFT -> reward model -> GRPO.

What must hold for every family: no prompt carries a doubled BOS, the completion tokens are the
ones of the jointly tokenised text wherever the template's boundary allows it, and a turn ends at
any of the model's end tokens — the same in the env, SFT labels, reward-model rows and the sampler.
"""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium
import pytest
import torch
from chat_tokenizers import FAMILIES, build_tokenizer, save_family

import llm_gym  # noqa: F401  (registers env ids)
from llm_gym.tasks import make_task
from llm_gym.tokenization import encode_completions, encode_prompts, joint_boundary_ok, stop_token_ids

TASK = make_task("arithmetic")
TEXTS = [s.prompt + s.reference for s in TASK.dataset("train", 400, seed=0)] + ["user assistant system"]


def chat_rows(family: str, n: int, seed: int = 0) -> list[dict]:
    """Arithmetic as the family's users would store it: chat ``messages``, or prompt/completion without a template."""
    samples = TASK.dataset("train", n, seed)
    if family == "gpt2":
        return [{"prompt": f"Q: {s.prompt}\nA:", "completion": " " + s.reference} for s in samples]
    return [{"messages": [{"role": "user", "content": s.prompt}, {"role": "assistant", "content": s.reference}]}
            for s in samples]


def doubled_bos(ids: list[int], bos: int | None) -> bool:
    return bos is not None and ids[:2] == [bos, bos]


@pytest.mark.parametrize("family", FAMILIES)
def test_prompt_ids_carry_one_bos_and_completions_match_the_joint_text(family):
    tokenizer, _ = build_tokenizer(family, TEXTS)
    for row in chat_rows(family, 20):
        if family == "gpt2":
            prompt, completion = row["prompt"], row["completion"]
        else:
            prompt = tokenizer.apply_chat_template(row["messages"][:-1], add_generation_prompt=True, tokenize=False)
            completion = row["messages"][-1]["content"]
        ids = encode_prompts(tokenizer, [prompt])[0]
        assert not doubled_bos(ids, tokenizer.bos_token_id)
        if family == "llama":
            assert tokenizer(prompt)["input_ids"][:2] == [tokenizer.bos_token_id] * 2  # what the guard prevents
            assert ids.count(tokenizer.bos_token_id) == 1
        if family != "gpt2":  # TRL's tokenisation of a chat prompt: the template, no special tokens added
            templated = tokenizer.apply_chat_template(row["messages"][:-1], add_generation_prompt=True, tokenize=True,
                                                      return_dict=True)["input_ids"]
            assert ids == templated
        assert joint_boundary_ok(tokenizer, prompt, completion)
        assert ids + encode_completions(tokenizer, [completion])[0] == encode_prompts(tokenizer, [prompt + completion])[0]


def test_a_template_ending_in_a_space_breaks_the_joint_boundary():
    """Why llm_gym keeps the env's prompt ids and documents it: ``'Ġ'`` + ``'118'`` apart vs ``'Ġ1'`` + ``'18'``."""
    tokenizer, _ = build_tokenizer("gpt2", [f"a: {n}" for n in range(200)])
    assert joint_boundary_ok(tokenizer, "a:", " 118") and not joint_boundary_ok(tokenizer, "a: ", "118")


def test_stop_token_ids_collect_every_end_of_turn_token(tmp_path):
    llama, llama_generation = build_tokenizer("llama", TEXTS)
    assert stop_token_ids(llama, llama_generation) == tuple(
        llama.convert_tokens_to_ids(["<|eot_id|>", "<|end_of_text|>"]))
    qwen_dir = save_family(tmp_path / "qwen", "qwen", TEXTS)
    qwen, _ = build_tokenizer("qwen", TEXTS)
    assert stop_token_ids(qwen, qwen_dir) == tuple(qwen.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"]))
    assert stop_token_ids(qwen, tmp_path / "no-generation-config") == (qwen.eos_token_id,)
    llama_generation.eos_token_id = [len(llama) + 5]
    with pytest.raises(ValueError, match=rf"end-of-turn token id {len(llama) + 5} .* not in the tokenizer's vocabulary"):
        stop_token_ids(llama, llama_generation)


def test_sampler_stops_each_row_at_the_first_of_any_stop_token(tiny_model_dir):
    from agents.rl.sampling import sample_completions
    from llm_gym.models import load_causal_lm

    model, tokenizer = load_causal_lm(tiny_model_dir)
    stop = tuple(tokenizer.convert_tokens_to_ids(["7", "3"])) + (tokenizer.eos_token_id,)
    ids = torch.tensor(encode_prompts(tokenizer, ["12+34="] * 16))
    out = sample_completions(model, ids, torch.ones_like(ids), 12, stop, tokenizer.pad_token_id, temperature=1.0,
                             generator=torch.Generator().manual_seed(0))
    ended_by = set()
    for row, length, ended in zip(out.ids.tolist(), out.lengths.tolist(), out.ended.tolist()):
        hits = [i for i, token in enumerate(row[:length]) if token in stop]
        assert hits == ([length - 1] if ended else [])  # a row ends at its first stop token, the stop kept
        assert all(token == tokenizer.pad_token_id for token in row[length:])
        ended_by.update(row[length - 1 : length] if ended else [])
    assert len(ended_by) >= 2  # more than one of the stop ids ended a row


def real_ids(obs: dict, P: int) -> list[int]:
    return [int(t) for t, m in zip(obs["input_ids"][:P], obs["attention_mask"][:P]) if m]


@pytest.mark.parametrize("family", FAMILIES)
def test_env_sft_reward_model_and_grpo_agree_on_tokens(family, tmp_path):
    """env -> SFT -> reward model -> GRPO with the family's own tokenizer, template and stop tokens."""
    from agents.supervised.data import encode_reward_text, encode_sft
    from agents.rl.grpo import GRPO, GRPOConfig
    from agents.supervised.reward_training import RewardModelConfig, train_reward_model
    from agents.supervised.sft import SFTConfig, train_sft
    from llm_gym.models import load_tokenizer

    datasets = pytest.importorskip("datasets")
    model_dir = save_family(tmp_path / "model", family, TEXTS)
    tokenizer = load_tokenizer(model_dir)
    rows = datasets.Dataset.from_list(chat_rows(family, 48))
    stops = stop_token_ids(tokenizer, model_dir)

    # env: one BOS, the completion's ids are the jointly tokenised text's, any stop token ends the turn
    env = gymnasium.make("llm_gym/Dataset-v0", data_files=rows, tokenizer=str(model_dir), granularity="sequence")
    P = env.unwrapped.problem.max_prompt_tokens
    assert env.unwrapped.problem.stop_token_ids == stops
    for seed in range(4):
        obs, info = env.reset(seed=seed)
        sample = env.unwrapped.engine.samples[0]
        prompt_ids = real_ids(obs, P)
        assert not doubled_bos(prompt_ids, tokenizer.bos_token_id)
        if family == "gpt2":
            joint = encode_prompts(tokenizer, [sample.prompt + sample.reference])[0]
        else:  # TRL's tokenisation of the whole chat: the template, rendered and tokenised in one go
            messages = next(r["messages"] for r in rows if tokenizer.apply_chat_template(
                r["messages"][:-1], add_generation_prompt=True, tokenize=False) == sample.prompt)
            joint = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
        assert joint[: len(prompt_ids)] == prompt_ids
        answer = encode_completions(tokenizer, [sample.reference])[0]
        assert joint[len(prompt_ids) : len(prompt_ids) + len(answer)] == answer
        if family != "gpt2":  # the template ends the turn with the tokenizer's EOS, which SFT teaches
            assert joint[len(prompt_ids) + len(answer)] == tokenizer.eos_token_id
        _, reward, terminated, _, info = env.step(answer + [stops[-1]])  # the *last* stop id also ends the turn
        assert terminated and info["eos"] and reward == 1.0 and info["completion_ids"] == answer + [stops[-1]]

    # SFT: the same prompt ids, the completion + EOS learned; an in-memory dataset as data
    row = encode_sft(tokenizer, sample.prompt, sample.reference, 128)
    assert row["input_ids"][: len(prompt_ids)] == prompt_ids
    assert [t for t in row["labels"] if t != -100] == answer + [tokenizer.eos_token_id]
    sft = train_sft(SFTConfig(model_name_or_path=str(model_dir), output_dir=str(tmp_path / "sft"), data=rows, max_steps=2,
                              batch_size=8, eval_size=4, eval_batch_size=8, eval_every=0, max_length=64, learning_rate=1e-3,
                              max_new_tokens=4)).output_dir
    assert (sft / "data" / "data").is_dir()  # the in-memory dataset is saved with the run, the config points at it

    # reward model: its text is tokenised like the env's prompts
    ids, _ = encode_reward_text(tokenizer, sample.prompt, sample.reference, 128)
    assert ids[: len(prompt_ids)] == prompt_ids and not doubled_bos(ids, tokenizer.bos_token_id)
    pairs = datasets.Dataset.from_list([{"prompt": s.prompt, "chosen": s.reference, "rejected": s.reference + "1"}
                                        for s in env.unwrapped.problem.task.samples])
    rm = train_reward_model(RewardModelConfig(data=pairs, output_dir=str(tmp_path / "rm"), model_name_or_path=str(sft),
                                              max_steps=2, batch_size=8, eval_every=0, eval_fraction=0.3)).output_dir

    # GRPO on the learned reward, sampling until the env's stop ids
    grpo = GRPO(GRPOConfig(model_name_or_path=str(sft), batch_size=4, num_generations=2, num_mini_batches=1,
                           save_steps=0, eval_episodes=4))
    result = grpo.train("llm_gym/Dataset-v0", 4, 0, tmp_path / "grpo",
                        {"data_files": rows, "reward": f"learned:path={rm}", "max_new_tokens": 4})
    assert len(result.curve) == 1 and all(v == v for v in result.curve[0].values())  # no NaN


def test_the_messages_split_follows_content_not_the_template():
    from llm_gym.tasks.datasets import DatasetTask

    datasets = pytest.importorskip("datasets")
    rows = datasets.Dataset.from_list(chat_rows("qwen", 300))
    held_out = {}
    for family in ("llama", "qwen"):
        task = DatasetTask.from_files(rows, tokenizer=build_tokenizer(family, TEXTS)[0])
        held_out[family] = sorted(json.dumps(s.split_key) for s in task.splits["test"])
    assert held_out["llama"] == held_out["qwen"] and 10 <= len(held_out["qwen"]) <= 60


def test_a_template_that_refuses_a_row_names_the_row_and_the_template_error():
    from llm_gym.tasks.files import DatasetError

    datasets = pytest.importorskip("datasets")
    tokenizer, _ = build_tokenizer("qwen", TEXTS)
    tokenizer.chat_template = ("{% if messages[0]['role'] != 'system' %}{{ raise_exception('the first message must be "
                               "the system prompt') }}{% endif %}" + tokenizer.chat_template)
    with pytest.raises(DatasetError, match=r"in-memory dataset \(data_files\) row 1: cannot apply the tokenizer's chat "
                                           r"template to this row: the first message must be the system prompt"):
        gymnasium.make("llm_gym/Dataset-v0", data_files=datasets.Dataset.from_list(chat_rows("qwen", 3)),
                       tokenizer=tokenizer)


def test_an_end_of_turn_token_outside_the_tokenizer_is_refused(tmp_path):
    model_dir = save_family(tmp_path / "llama", "llama", TEXTS)
    config = json.loads((model_dir / "generation_config.json").read_text())
    config["eos_token_id"] = [config["eos_token_id"][0], 128009]  # Llama 3's <|eot_id|> id, not in this vocabulary
    (model_dir / "generation_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"end-of-turn token id 128009 \(generation_config.eos_token_id\) is not in the "
                                         r"tokenizer's vocabulary"):
        gymnasium.make("llm_gym/Arithmetic-v0", tokenizer=str(model_dir))


def test_a_reward_model_that_disagrees_with_the_policy_on_special_tokens_is_refused(tmp_path, tiny_model_dir):
    from transformers import AutoModelForSequenceClassification

    from llm_gym.models import load_tokenizer

    rm_dir = tmp_path / "rm"  # a reward model on llm_gym's own char tokenizer: no ChatML tokens
    config = classifier_config(tiny_model_dir)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(rm_dir)
    load_tokenizer(tiny_model_dir).save_pretrained(rm_dir)
    policy_dir = save_family(tmp_path / "qwen", "qwen", TEXTS)
    with pytest.raises(ValueError, match=rf"reward model {rm_dir} and the policy disagree on special tokens: the "
                                         r"policy's chat template writes \['<\|im_end\|>', '<\|im_start\|>'\]"):
        gymnasium.make("llm_gym/Arithmetic-v0", tokenizer=str(policy_dir), reward=f"learned:path={rm_dir}")
    gymnasium.make("llm_gym/Arithmetic-v0", reward=f"learned:path={rm_dir}")  # no template: nothing to disagree on


def classifier_config(model_dir: Path):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_dir)
    config.num_labels = 1
    return config
