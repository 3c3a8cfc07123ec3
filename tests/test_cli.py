"""The ``llm-gym`` command line: TRL's option names and help everywhere, one-line errors before any
model loads, quiet loading, and run directories that refuse to resume a different setup."""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
import tomllib
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import transformers

import llm_gym
from agents.rl.registry import ALGORITHMS
from agents.run_record import RUN_RECORD_FILE, RunMismatch, check_resumable, read_run_record, write_run_record
from agents.supervised.sft import SFTConfig
from llm_gym.cli import COMMAND_ENTRY_POINT_GROUP, build_parser, main
from llm_gym.commands import chosen_parser

ROOT = Path(__file__).resolve().parents[1]
# Spellings the convention replaced: output, model and resume flags have one name in every command.
FORBIDDEN = {"--out", "--output", "--out-dir", "--out_dir", "--model", "--policy", "--policy-dir", "--policy_dir",
             "--base-model", "--base_model", "--resume", "--task", "--task-kwargs", "--task_kwargs", "--rm-dir"}
# Commands that write a run and so must take --output_dir; commands that start from a model take --model_name_or_path.
WRITES_A_RUN = {"tiny", "sft", "feedback", "reward-model", "demo", "bench leaderboard", *ALGORITHMS}
STARTS_FROM_A_MODEL = {"sft", "feedback", "reward-model", *(set(ALGORITHMS) - {"sb3-ppo"})}  # SB3 starts from scratch
LONG_COMMANDS = {"sft", "reward-model", *ALGORITHMS}  # checkpointed; feedback, demo and bench resume by rerunning


def leaf_parsers(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    """Every runnable (sub)command parser, keyed by its command words (``"bench run"``)."""
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.update(leaf_parsers(sub, f"{prefix} {name}".strip()))
    return found or {prefix: parser}


def test_the_installed_entry_points_are_the_ones_pyproject_declares():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"][COMMAND_ENTRY_POINT_GROUP]
    installed = {ep.name: ep.value for ep in entry_points(group=COMMAND_ENTRY_POINT_GROUP)}
    assert installed == declared, "stale install: rerun `pip install -e .` so the entry points match pyproject.toml"


COMMANDS = leaf_parsers(build_parser())


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_option_has_help_and_the_conventional_name(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command.split(), "--help"])
    assert exit_info.value.code == 0
    shown = capsys.readouterr().out
    parser = COMMANDS[command]
    options = [a for a in parser._actions if a.option_strings]
    for action in options:
        assert action.help and action.help.strip(), f"llm-gym {command}: {action.option_strings} has no help text"
        long_names = [s for s in action.option_strings if s.startswith("--")]
        assert not FORBIDDEN & set(action.option_strings), f"llm-gym {command}: old spelling {action.option_strings}"
        if long_names and "_" in long_names[0]:  # the TRL spelling first, the dash spelling as alias
            assert long_names[0].replace("_", "-") in action.option_strings
        assert long_names[0] in shown
    names = {s for a in options for s in a.option_strings}
    if command in WRITES_A_RUN:
        assert "--output_dir" in names and "--output-dir" in names
    if command in STARTS_FROM_A_MODEL:  # every trainer of an HF model chooses the precision of its forwards
        assert "--model_name_or_path" in names
        if command != "feedback":
            assert "--mixed_precision" in names and "{auto,no,bf16,fp16}" in shown
    if command in LONG_COMMANDS:
        assert "--resume_from_checkpoint" in names
    if command in ALGORITHMS:
        assert "--reward_model" in names and "--env_id" in names
    if "--env_kwargs" in names:
        assert "e.g. '{" in shown  # documented with a quoted example


def test_top_level_help_version_and_envs_table(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    description = capsys.readouterr().out.split("\n\n")[1]
    assert description.rstrip().endswith(".") and description[0].isupper()
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"llm-gym {llm_gym.__version__}"
    assert main(["envs", "--filter", "ARITH"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ENV", "ID", "REWARD", "GOLD", "DESCRIPTION"] and len(lines) > 2
    assert all("arith" in line.split()[0].lower() for line in lines[1:])
    columns = [line.index("REWARD") for line in lines[:1]] + [len(line.split()[0]) for line in lines[1:]]
    assert all(len(line) > columns[0] and line[columns[0] - 2 : columns[0]] == "  " for line in lines)  # aligned
    assert main(["envs", "--filter", "no-such-env"]) == 1


@pytest.fixture
def no_model_loads(monkeypatch):
    """Any model load fails the test: errors must come before it."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the error")

    for auto in (transformers.AutoModelForCausalLM, transformers.AutoModelForSequenceClassification):
        monkeypatch.setattr(auto, "from_pretrained", refuse)


def one_line_error(argv: list[str], capsys, status: int = 2) -> str:
    """Run ``llm-gym argv``, expect ``status`` and exactly one stderr line without a traceback; return it."""
    try:
        code = main(argv)
    except SystemExit as exit_info:
        code = exit_info.code
    err = capsys.readouterr().err
    assert code == status, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err.strip()


@pytest.mark.parametrize("command, needs", [
    ("sft", ["--model_name_or_path", "{model}", "--output_dir", "{tmp}/out"]),
    ("feedback", ["--model_name_or_path", "{model}", "--output_dir", "{tmp}/out"]),
    ("reward-model", ["--data", "{data}", "--output_dir", "{tmp}/out", "--model_name_or_path", "{model}"]),
])
def test_usage_errors_are_one_line_and_come_before_any_model_loads(command, needs, tiny_model_dir, tmp_path, capsys, no_model_loads):
    data = tmp_path / "pairs.jsonl"
    data.write_text(json.dumps({"prompt": "1+1=", "chosen": "2", "rejected": "3"}) + "\n")
    argv = [command, *(a.format(model=tiny_model_dir, tmp=tmp_path, data=data) for a in needs)]
    missing = [a.replace(str(tiny_model_dir), str(tmp_path / "missing")) for a in argv]
    assert one_line_error(missing, capsys) == (
        f"llm-gym {command}: error: argument --model_name_or_path/--model-name-or-path: directory not found: {tmp_path / 'missing'}"
    )
    choice = "--schedule" if command != "feedback" else "--labeler"
    assert re.fullmatch(rf"llm-gym {command}: error: argument {choice}: invalid choice: 'cosin' \(choose from .*\)",
                        one_line_error([*argv, choice, "cosin"], capsys))
    assert one_line_error([*argv, "--bogus", "1"], capsys) == f"llm-gym {command}: error: unrecognized arguments: --bogus 1"
    assert "unknown env id 'llm_gym/Nope-v0'" in one_line_error([*argv, "--env_id", "llm_gym/Nope-v0"], capsys) \
        if command != "reward-model" else True
    config = tmp_path / "bad.yaml"
    config.write_text("schedule: cosin\n" if command != "feedback" else "labeler: mturk\n")
    assert "invalid choice" in one_line_error([*argv, "--config", str(config)], capsys)  # a bad choice in YAML too


def test_runtime_errors_are_one_line_with_status_1_and_debug_shows_the_traceback(tiny_model_dir, tmp_path, capsys, no_model_loads):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    argv = ["reward-model", "--data", str(empty), "--output_dir", str(tmp_path / "rm"), "--model_name_or_path", str(tiny_model_dir)]
    assert one_line_error(argv, capsys, status=1) == (
        f"llm-gym reward-model: error: feedback dataset {empty} is empty: no usable preference pairs or ratings (no rows)"
    )
    with pytest.raises(ValueError, match="is empty"):
        main([*argv, "--debug"])


def test_a_trl_flag_with_another_spelling_here_is_named_with_its_equivalent(tiny_model_dir, tmp_path, capsys):
    argv = ["grpo", "--model_name_or_path", str(tiny_model_dir), "--output_dir", str(tmp_path / "g"),
            "--max-completion-length", "6", "--bf16", "--bogus", "1"]
    assert one_line_error(argv, capsys) == (
        "llm-gym grpo: error: unrecognized arguments: --max-completion-length 6 --bf16 --bogus 1; "
        "TRL's --bf16 is --mixed_precision bf16 here; "
        "TRL's --max_completion_length is --env_kwargs '{max_new_tokens: N}' here")


def test_an_unknown_reward_spec_and_a_missing_optional_package_are_one_line_errors(tiny_model_dir, tmp_path, capsys,
                                                                                    monkeypatch):
    argv = ["grpo", "--model_name_or_path", str(tiny_model_dir), "--output_dir", str(tmp_path / "g"), "--budget", "8",
            "--batch_size", "4", "--num_generations", "2"]
    assert "unknown reward spec 'mymod.accuracy'" in one_line_error(
        [*argv, "--env_kwargs", '{"reward": "mymod.accuracy"}'], capsys, status=1)
    import agents.rl.policy

    def no_peft(*args, **kwargs):
        raise ImportError("lora_r > 0 needs peft: pip install 'llm-gym[lora]'")

    monkeypatch.setattr(agents.rl.policy, "load_actor_critic", no_peft)
    monkeypatch.setattr("agents.rl.run.load_actor_critic", no_peft)
    assert one_line_error([*argv, "--lora_r", "4"], capsys, status=1).endswith("needs peft: pip install 'llm-gym[lora]'")
    assert not (tmp_path / "g" / "run_record.json").exists()  # the corrected command may reuse the folder


def test_an_rl_command_trains_on_a_chat_dataset_with_the_policys_template(tmp_path):
    """A ``messages`` dataset needs a tokenizer to render its prompts: the policy's, for the trainer's env and
    for the reward monitor's alike, without the user repeating it in env_kwargs."""
    from chat_tokenizers import save_family

    rows = [{"messages": [{"role": "user", "content": f"{a}+{a}="}, {"role": "assistant", "content": str(2 * a)}]}
            for a in range(12)]
    data = tmp_path / "chat.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    policy = save_family(tmp_path / "qwen", "qwen", [m["content"] for row in rows for m in row["messages"]])
    out = tmp_path / "grpo"
    env_kwargs = json.dumps({"data_files": str(data), "max_new_tokens": 4})
    assert main(["grpo", "--model_name_or_path", str(policy), "--output_dir", str(out), "--env_id", "llm_gym/Dataset-v0",
                 "--env_kwargs", env_kwargs, "--budget", "8", "--batch_size", "4", "--num_generations", "2",
                 "--eval_episodes", "2"]) == 0
    assert (out / "policy" / "config.json").is_file() and (out / "final.json").is_file()


def test_config_file_values_are_defaults_that_flags_override(tmp_path, tiny_model_dir):
    config = tmp_path / "sft.yaml"
    config.write_text(f"model_name_or_path: {tiny_model_dir}\noutput_dir: {tmp_path}/out\nmax_steps: 7\nlearning_rate: 0.5\n"
                      "env_kwargs: {task_kwargs: {digits: 2}}\ncpu: true\n")
    parser = build_parser()
    args = parser.parse_args(["sft", "--config", str(config), "--learning_rate", "0.25", "--env_kwargs", '{"task_kwargs": {"digits": 3}}'])
    sft_parser = chosen_parser(parser, args)
    (sft,) = sft_parser.configs_from(args)
    assert (sft.max_steps, sft.learning_rate, sft.cpu, sft.env_kwargs) == (7, 0.25, True, {"task_kwargs": {"digits": 3}})
    args = parser.parse_args(["sft", "--model_name_or_path", str(tiny_model_dir), "--output-dir", "o", "--cpu"])
    assert sft_parser.configs_from(args)[0].cpu is True  # a boolean is a switch


def sft_argv(model: Path, out: Path, *extra: str) -> list[str]:
    return ["sft", "--model_name_or_path", str(model), "--output_dir", str(out), "--max_steps", "1", "--train_size", "32",
            "--eval_size", "4", "--batch_size", "8", "--warmup_steps", "0", "--eval_every", "0", *extra]


def test_third_party_loading_noise_is_quiet_unless_verbose(tiny_model_dir, tmp_path, capsys):
    assert main(sft_argv(tiny_model_dir, tmp_path / "quiet")) == 0
    quiet = capsys.readouterr()
    assert "Loading weights" not in quiet.err and "LOAD REPORT" not in quiet.err
    assert "sft: 100%" in quiet.err and "SFT done" in quiet.out  # our own progress bar and summary stay
    assert main(sft_argv(tiny_model_dir, tmp_path / "verbose", "-v")) == 0
    assert "Loading weights" in capsys.readouterr().err


def test_resuming_into_a_run_of_another_env_is_refused_naming_the_difference(tiny_model_dir, tmp_path, capsys, monkeypatch):
    out = tmp_path / "sft"
    assert main(sft_argv(tiny_model_dir, out, "--save_steps", "1", "--env_kwargs", '{"task_kwargs": {"digits": 2}}')) == 0
    record = read_run_record(out)
    assert record["command"] == "sft" and record["config"]["env_kwargs"] == {"task_kwargs": {"digits": 2}}
    assert record["config"]["model_name_or_path"] == str(tiny_model_dir.resolve())  # absolute
    assert {"python", "torch", "transformers"} <= set(record["versions"]) and record["git_commit"]
    capsys.readouterr()

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the refusal")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", refuse)
    err = one_line_error(sft_argv(tiny_model_dir, out, "--resume_from_checkpoint", "auto", "--max_steps", "2",
                                  "--env_kwargs", '{"task_kwargs": {"digits": 3}}'), capsys, status=1)
    assert err == (f"llm-gym sft: error: {out} holds a run with a different env_kwargs: "
                   '{"task_kwargs": {"digits": 2}} there, {"task_kwargs": {"digits": 3}} now; '
                   "rerun with the recorded setup, or choose another --output_dir")


def test_reward_model_and_feedback_refuse_another_data_or_env(tiny_model_dir, tmp_path):
    data = tmp_path / "a.jsonl"
    data.write_text("")
    from agents.feedback.collect import SETUP_KEYS as FEEDBACK_KEYS
    from agents.feedback.collect import FeedbackConfig
    from agents.supervised.reward_training import SETUP_KEYS as RM_KEYS
    from agents.supervised.reward_training import RewardModelConfig

    rm = RewardModelConfig(data=str(data), output_dir=str(tmp_path / "rm"), model_name_or_path=str(tiny_model_dir))
    write_run_record(rm.output_dir, "reward-model", rm)
    other = tmp_path / "b.jsonl"
    with pytest.raises(RunMismatch, match=rf"different data: '{data}' there, '{other}' now"):
        check_resumable(rm.output_dir, "reward-model", RewardModelConfig(**{**vars(rm), "data": str(other)}), keys=RM_KEYS)
    with pytest.raises(RunMismatch, match="different command: 'reward-model' there, 'sft' now"):
        check_resumable(rm.output_dir, "sft", rm, keys=RM_KEYS)
    fb = FeedbackConfig(model_name_or_path=str(tiny_model_dir), output_dir=str(tmp_path / "fb"), env_kwargs={"reward": "chrf"})
    write_run_record(fb.output_dir, "feedback", fb)
    check_resumable(fb.output_dir, "feedback", fb, keys=FEEDBACK_KEYS)  # the same setup resumes
    with pytest.raises(RunMismatch, match="different env_kwargs"):
        check_resumable(fb.output_dir, "feedback", FeedbackConfig(**{**vars(fb), "env_kwargs": {}}), keys=FEEDBACK_KEYS)
    # Values outside the config (an RL run's algorithm, env) are compared too.
    write_run_record(tmp_path / "rl", "train", rm, {"algo": "ppo", "env_id": "llm_gym/Count-v0"})
    with pytest.raises(RunMismatch, match="different algo: 'ppo' there, 'grpo' now"):
        check_resumable(tmp_path / "rl", "train", rm, {"algo": "grpo", "env_id": "llm_gym/Count-v0"})
    assert (tmp_path / "rl" / RUN_RECORD_FILE).is_file()


def pipeline_commands() -> list[str]:
    """The commands of the README's pipeline section (its ```sh block), one per line."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## The pipeline, step by step", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```sh\n(.*?)```", section, re.S)
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


# Appended flags override the README's values so the chain runs in seconds: smaller sizes, and (as an
# SFT model trained for 2 steps answers every prompt wrong, so exact-match gold scores all tie) a
# graded gold reward for the simulated person.
SHRINK = {"tiny": ["--n_layer", "1", "--n_embd", "32"],
          "sft": ["--max_steps", "2", "--train_size", "64", "--eval_size", "8", "--eval_every", "0"],
          "feedback": ["--num_prompts", "24", "--env_kwargs", '{"gold_reward": "chrf"}'],
          "reward-model": ["--max_steps", "2", "--eval_fraction", "0.3"],
          "ppo": ["--budget", "16", "--batch_size", "8", "--num_mini_batches", "1", "--num_ppo_epochs", "1",
                  "--eval_episodes", "8"]}


def test_readme_pipeline_commands_run_as_written(tmp_path, monkeypatch):
    commands = pipeline_commands()
    assert [shlex.split(c)[1] for c in commands] == ["tiny", "sft", "feedback", "reward-model", "ppo"]
    monkeypatch.chdir(tmp_path)
    for command in commands:
        words = shlex.split(command)
        assert words[0] == "llm-gym"
        assert main([*words[1:], *SHRINK[words[1]]]) == 0, command
    assert (tmp_path / "runs" / "rm" / "model.safetensors").is_file()
    assert SFTConfig(**read_run_record(tmp_path / "runs" / "sft")["config"]).output_dir == str(tmp_path / "runs" / "sft")


def test_a_command_loads_only_the_entry_point_it_needs_and_an_unknown_one_lists_every_command(capsys):
    code = ("import sys\nfrom llm_gym.cli import main\nassert main(['envs', '--filter', 'Count']) == 0\n"
            "print(sorted(m for m in ('agents.rl.registry', 'agents.supervised.sft', 'benchmarks.cli') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"  # the trainers and the benchmarks were never imported
    commands_of = lambda parser: set(next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices)  # noqa: E731
    assert commands_of(build_parser("sft")) == {"envs", "tiny", "sft"}
    assert commands_of(build_parser("ppo")) == commands_of(build_parser()) == commands_of(build_parser("nope"))
    with pytest.raises(SystemExit):
        main(["nope"])
    listed = re.search(r"invalid choice: 'nope' \(choose from (.*)\)", capsys.readouterr().err).group(1)
    commands = {name.strip("' ") for name in listed.split(",")}
    assert {"envs", "tiny", "sft", "feedback", "reward-model", "bench", "demo", *ALGORITHMS} == commands
