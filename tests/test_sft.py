"""SFT: row encoding matches the envs, learning on CPU, resume, CLI, and bad inputs rejected with their cause."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import gymnasium
import pytest
import torch
from safetensors.torch import load_file

import llm_gym  # noqa: F401  (registers env ids)
from agents.checkpoint import list_checkpoints
from agents.supervised.data import IGNORE_INDEX, SFTCollator, encode_sft, encode_sft_rows
from agents.supervised.sft import SFTConfig, train_sft
from llm_gym.cli import main as cli_main
from llm_gym.models import TinyModelConfig, load_tokenizer, save_tiny
from llm_gym.tasks import make_task

COPY_KWARGS = {"min_len": 1, "max_len": 3}


@pytest.fixture(scope="module")
def copy_model_dir(tmp_path_factory) -> Path:
    """Random-init 2-layer, 64-wide GPT-2 with a char tokenizer for the copy task."""
    task = make_task("copy", **COPY_KWARGS)
    texts = [s.prompt + s.reference for s in task.dataset("train", 500, seed=0)]
    return save_tiny(tmp_path_factory.mktemp("copy") / "model", texts, "char", TinyModelConfig(n_layer=2, n_embd=64))


def copy_config(model: Path, out: Path, **overrides) -> SFTConfig:
    base = SFTConfig(
        model_name_or_path=str(model), output_dir=str(out), env_id="llm_gym/Copy-v0",
        env_kwargs={"task_kwargs": dict(COPY_KWARGS)}, train_size=3000,
        eval_size=100, batch_size=32, max_steps=100, learning_rate=3e-3, warmup_steps=10, eval_every=0, log_every=10,
    )
    return replace(base, **overrides)


def test_rows_are_encoded_as_the_envs_encode_prompts(tiny_model_dir):
    tokenizer = load_tokenizer(tiny_model_dir)
    row = encode_sft(tokenizer, "12+34=", "46", max_length=64)
    prompt = tokenizer("12+34=")["input_ids"]
    assert prompt[0] == tokenizer.bos_token_id  # the env's prompt ids keep the tokenizer's BOS
    assert row["input_ids"] == prompt + tokenizer("46", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert row["labels"][: len(prompt)] == [IGNORE_INDEX] * len(prompt)
    assert row["labels"][len(prompt) :] == row["input_ids"][len(prompt) :]  # completion + EOS are learned
    batch = SFTCollator(tokenizer.pad_token_id)([row, encode_sft(tokenizer, "1+2=", "3", 64)])
    assert batch["input_ids"].shape == (2, len(row["input_ids"]))  # padded to the batch's longest row only
    assert batch["attention_mask"][1].sum() == len(encode_sft(tokenizer, "1+2=", "3", 64)["input_ids"])
    assert (batch["labels"][1][batch["attention_mask"][1] == 0] == IGNORE_INDEX).all()


def test_too_long_rows_are_dropped_and_counted(tiny_model_dir):
    tokenizer = load_tokenizer(tiny_model_dir)
    rows, dropped = encode_sft_rows(tokenizer, [("1+2=", "3"), ("12345+12345=", "24690")], max_length=8)
    assert dropped == 1 and len(rows) == 1
    with pytest.raises(ValueError, match="every row of .* is longer than max_length=4"):
        encode_sft_rows(tokenizer, [("12+34=", "46")], max_length=4)
    with pytest.raises(ValueError, match="is empty"):
        encode_sft_rows(tokenizer, [], max_length=8)


def test_sft_learns_copy_fast(copy_model_dir, tmp_path):
    # Margins from 3 runs (seeds 0, 1, 2; 19-78 s each on 2 CPU cores shared with other jobs): the
    # untrained model scores 0.00 held-out accuracy (loss 2.99); after 100 steps of batch 32 the
    # accuracy was 0.77 / 0.96 / 1.00 and the loss 0.67 / 0.46 / 0.49. Asserting accuracy >= 0.5
    # and a loss drop > 1.5 nats (measured: >= 2.3) leaves room for run-to-run noise.
    result = train_sft(copy_config(copy_model_dir, tmp_path / "sft"))
    assert result.initial["eval/accuracy"] <= 0.05
    assert result.initial["eval/loss"] - result.final["eval/loss"] > 1.5
    assert result.final["eval/accuracy"] >= 0.5
    assert result.final["eval/perplexity"] < result.initial["eval/perplexity"]
    out = result.output_dir
    assert (out / "model.safetensors").is_file() and (out / "sft_config.yaml").is_file()
    assert any((out / "tb").iterdir())
    # The output directory is what an env (tokenizer=DIR) and the next stages load.
    env = gymnasium.make("llm_gym/Copy-v0", tokenizer=str(out), task_kwargs=COPY_KWARGS, granularity="sequence")
    obs, info = env.reset(seed=0)
    assert obs["input_ids"].shape[0] == env.unwrapped.problem.max_prompt_tokens + env.unwrapped.problem.max_new_tokens


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_sft_learns_arithmetic_from_random_init(tmp_path):
    # The reference point: 3-layer, 128-wide GPT-2 (~600k params), batch 128, AdamW 3e-3, 500 steps.
    # Measured (2 CPU cores shared with other jobs, load ~10): held-out exact match 0.00 untrained;
    # seed 0: 0.07 / 0.19 / 0.74 / 0.89 / 0.905 at steps 100-500 (520 s wall); seed 1 (model and
    # data order): 0.09 / 0.31 / 0.71 / 0.80 / 0.855 (663 s). The bound (>= 0.5) is well under both.
    task = make_task("arithmetic")
    texts = [s.prompt + s.reference for s in task.dataset("train", 2000, seed=0)]
    model = save_tiny(tmp_path / "model", texts, "char", TinyModelConfig(n_layer=3, n_embd=128))
    config = SFTConfig(
        model_name_or_path=str(model), output_dir=str(tmp_path / "sft"), env_id="llm_gym/Arithmetic-v0", batch_size=128, max_steps=500,
        learning_rate=3e-3, warmup_steps=30, eval_every=100, max_length=32,
    )
    result = train_sft(config)
    assert result.initial["eval/accuracy"] <= 0.02
    assert result.final["eval/accuracy"] >= 0.5


def test_resume_reproduces_the_uninterrupted_run(copy_model_dir, tmp_path):
    short = dict(max_steps=6, eval_size=8, train_size=200, batch_size=16, warmup_steps=2, log_every=2, save_steps=3)
    full = train_sft(copy_config(copy_model_dir, tmp_path / "full", **short))
    steps = list_checkpoints(full.output_dir / "checkpoints")
    assert [p.name for p in steps] == ["step-00000003", "step-00000006"]
    # Resume from the step-3 checkpoint as if the run had been killed there: same end state.
    resumed = train_sft(copy_config(copy_model_dir, tmp_path / "resumed", **short, resume_from_checkpoint=str(steps[0])))
    assert resumed.initial["eval/loss"] != full.initial["eval/loss"]  # it really started from step 3
    a = load_file(full.output_dir / "model.safetensors")
    b = load_file(resumed.output_dir / "model.safetensors")
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6)


def test_resume_from_another_models_checkpoint_is_refused(copy_model_dir, tiny_model_dir, tmp_path):
    train_sft(copy_config(copy_model_dir, tmp_path / "copy", max_steps=1, eval_size=4, train_size=64, warmup_steps=0))
    with pytest.raises(ValueError, match="written for a different model: parameter '.*' has shape .* in the checkpoint but"):
        train_sft(
            SFTConfig(model_name_or_path=str(tiny_model_dir), output_dir=str(tmp_path / "arith"), max_steps=2, eval_size=4,
                      train_size=64, resume_from_checkpoint=str(tmp_path / "copy" / "checkpoints"))
        )


def test_tokenizer_model_mismatch_is_refused(copy_model_dir, tiny_model_dir, tmp_path):
    # A model directory whose tokenizer has more tokens than the model embeds.
    import shutil

    mixed = tmp_path / "mixed"
    shutil.copytree(copy_model_dir, mixed)
    big = save_tiny(tmp_path / "big", ["abcdefghijklmnopqrstuvwxyz0123456789+-=ABCDEFGHIJKLMNOP"], "char")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(big / name, mixed / name)
    with pytest.raises(ValueError, match="tokenizer/model vocabulary mismatch"):
        train_sft(copy_config(mixed, tmp_path / "out", max_steps=1))


def test_empty_dataset_is_refused(copy_model_dir, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty"):
        train_sft(copy_config(copy_model_dir, tmp_path / "out", data=str(empty)))
    with pytest.raises(ValueError, match="SFT training data is empty"):
        train_sft(copy_config(copy_model_dir, tmp_path / "out", train_size=0))


def test_messages_jsonl_with_chat_template_and_cli_overrides(copy_model_dir, tmp_path):
    tokenizer = load_tokenizer(copy_model_dir)
    assert tokenizer.chat_template is not None
    data = tmp_path / "chat.jsonl"
    rows = [{"messages": [{"role": "user", "content": f"copy {w}"}, {"role": "assistant", "content": w}]}
            for w in ["ab", "cab", "bad", "dab", "ace", "fed", "bead", "cafe", "deaf", "face"] * 4]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "sft.yaml").write_text(
        f"model_name_or_path: {copy_model_dir}\noutput_dir: {tmp_path / 'out'}\ndata: {data}\nmax_steps: 50\nbatch_size: 8\neval_every: 0\n"
    )
    # The chat template's characters ("user: ", "assistant: ") are outside the copy tokenizer's
    # alphabet and map to <unk>; the rows still encode, and the run must go through end to end.
    assert cli_main(["sft", "--config", str(tmp_path / "sft.yaml"), "--max-steps", "3", "--learning_rate", "1e-3"]) == 0
    saved = (tmp_path / "out" / "sft_config.yaml").read_text()
    assert "max_steps: 3" in saved and "learning_rate: 0.001" in saved and f"data: {data.resolve()}" in saved
    metrics = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert {"eval/loss", "eval/accuracy"} <= set(metrics[-1]) and any("loss/train" in m for m in metrics)


def test_config_errors_name_the_option(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"model_name_or_path: {tmp_path}\noutput_dir: o\nlearning_rat: 0.1\n")
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["sft", "--config", str(bad)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == f"llm-gym sft: error: --config {bad}: unknown option(s) learning_rat (did you mean learning_rate?)\n"
    with pytest.raises(SystemExit):
        cli_main(["sft", "--model_name_or_path", str(tmp_path)])
    assert capsys.readouterr().err.strip() == "llm-gym sft: error: the following arguments are required: --output_dir/--output-dir"


def test_checkpoints_are_atomic_and_pruned(tmp_path):
    from agents.checkpoint import load_checkpoint, resolve_checkpoint, save_checkpoint

    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, model, step, optimizer, extra={"note": step}, keep_last=2)
    (tmp_path / ".tmp-step-00000009-123").mkdir()  # a save killed mid-write: never picked up
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000002", "step-00000003"]
    assert resolve_checkpoint(tmp_path).name == "step-00000003"
    fresh = torch.nn.Linear(3, 2)
    fresh_opt = torch.optim.AdamW(fresh.parameters(), lr=0.1)
    state = load_checkpoint(tmp_path, fresh, fresh_opt)
    assert state.step == 3 and state.extra == {"note": 3}
    torch.testing.assert_close(fresh.weight, model.weight)
    assert fresh_opt.state_dict()["state"][0]["step"] == optimizer.state_dict()["state"][0]["step"]
    with pytest.raises(FileNotFoundError, match="no checkpoint in"):
        resolve_checkpoint(tmp_path / "missing")


@pytest.mark.parametrize(
    "name, cls_path",
    [("sft_arithmetic", "agents.supervised.sft:SFTConfig"), ("feedback_arithmetic", "agents.feedback.collect:FeedbackConfig"),
     ("reward_model_arithmetic", "agents.supervised.reward_training:RewardModelConfig")],
)
def test_example_configs_load(name, cls_path):
    import importlib

    from agents.run_config import load_config

    module, cls = cls_path.split(":")
    config = load_config(getattr(importlib.import_module(module), cls), Path(__file__).parents[1] / "agents" / "configs" / f"{name}.yaml")
    assert config.seed == 0
