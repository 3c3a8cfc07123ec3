"""The registry: every config parses with HfArgumentParser, bad names and options are refused by name,
a toy algorithm added with one registration trains through the loop, callbacks and evaluation rollouts."""

from __future__ import annotations

import dataclasses
import json
import sys
import textwrap

import pytest
from rl_helpers import sft_dir  # noqa: F401  (fixture)
from transformers import HfArgumentParser

from agents.rl import registry
from agents.rl.callbacks import IterationReport
from agents.rl.evaluation import evaluate
from agents.rl.registry import ALGORITHMS, make_algorithm

ENV = "llm_gym/Arithmetic-v0"


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_every_config_parses_with_hf_argument_parser_and_has_help(name):
    config_class = ALGORITHMS[name].config_class
    (config,) = HfArgumentParser(config_class).parse_args_into_dataclasses([])
    assert isinstance(config, config_class)
    assert all(f.metadata.get("help") for f in dataclasses.fields(config_class)), name
    assert ALGORITHMS[name].description


@pytest.mark.parametrize("algo, option, message", [
    ("grpo", {"beta": -1.0}, "beta must be >= 0"), ("rloo", {"kl_coef": -0.1}, "kl_coef .* must be >= 0"),
    ("ppo", {"epsilon": 0.0}, "epsilon and epsilon_high must be > 0"), ("dapo", {"epsilon_high": -0.1}, "must be > 0"),
    ("grpo", {"temperature": 0.0}, "completions of a prompt would be identical")])
def test_settings_that_would_train_nothing_or_the_wrong_way_are_refused_by_name(algo, option, message):
    with pytest.raises(ValueError, match=message):
        make_algorithm(algo, **option)


def test_a_budget_that_is_not_a_whole_number_of_batches_says_what_it_trains(sft_dir, tmp_path, caplog):
    make_algorithm("grpo", model_name_or_path=str(sft_dir), batch_size=4, num_generations=2, eval_episodes=2).train(
        "llm_gym/Arithmetic-v0", 6, 0, tmp_path)
    assert "budget of 6 samples is not a whole number of batches of 4: the run trains 4 samples" in caplog.text


def test_registry_lists_every_algorithm():
    assert {"ppo", "reinforce", "rloo", "grpo", "dapo", "gspo", "reinforce++", "best-of-n", "dpo", "sb3-ppo"} <= set(ALGORITHMS)


def test_unknown_algorithm_and_unknown_option_are_refused_by_name():
    with pytest.raises(ValueError, match=r"unknown algorithm 'ppo2'; registered: .*grpo.*ppo"):
        make_algorithm("ppo2")
    with pytest.raises(ValueError, match=r"algorithm 'grpo' has no option\(s\) vf_coef"):
        make_algorithm("grpo", vf_coef=0.1)
    with pytest.raises(ValueError, match="algorithm 'ppo' is already registered"):
        registry.register("ppo", ALGORITHMS["ppo"].config_class, ALGORITHMS["ppo"].factory, "again")


def test_a_toy_algorithm_in_its_own_module_trains_with_one_registration(sft_dir, tmp_path, monkeypatch):
    """Adding an algorithm = one file (here a temporary module) + one ``register`` call."""
    (tmp_path / "toy_algo.py").write_text(textwrap.dedent('''
        from dataclasses import dataclass, field
        from agents.rl.config import RLConfig
        from agents.rl.on_policy import OnPolicyAlgorithm

        @dataclass
        class ToyConfig(RLConfig):
            shift: float = field(default=0.5, metadata={"help": "subtracted from every score"})

        class Toy(OnPolicyAlgorithm):
            """Advantage = score - shift, the plain policy gradient."""
            name = "toy"
            config_class = ToyConfig

            def advantages(self, batch):
                return batch.score - self.config.shift, None
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "ALGORITHMS", dict(ALGORITHMS))
    import toy_algo

    registry.register("toy", toy_algo.ToyConfig, toy_algo.Toy, "a test algorithm")
    agent = registry.make_algorithm("toy", model_name_or_path=str(sft_dir), batch_size=8, eval_episodes=8, shift=1.0)
    result = agent.train(ENV, 16, 0, tmp_path / "run")
    assert [row["step"] for row in result.curve] == [8, 16] and "loss/policy" in result.curve[0]
    assert json.loads((tmp_path / "run" / "run_record.json").read_text())["algo"] == "toy"
    sys.modules.pop("toy_algo", None)


class StopAtTwo:
    def __init__(self):
        self.reports: list[IterationReport] = []

    def on_iteration_end(self, report: IterationReport) -> bool:
        self.reports.append(report)
        report.metrics["monitor/gap"] = float(report.proxy.mean() - report.gold.mean())
        return report.iteration == 2


def test_callbacks_see_the_samples_add_metrics_and_stop_with_a_checkpoint(sft_dir, tmp_path):
    monitor = StopAtTwo()
    agent = make_algorithm("grpo", model_name_or_path=str(sft_dir), batch_size=8, eval_episodes=8, save_steps=0)
    result = agent.train(ENV, 80, 0, tmp_path, callbacks=[monitor])
    assert [r.iteration for r in monitor.reports] == [1, 2] and len(result.curve) == 2
    first = monitor.reports[0]
    assert first.samples_seen == 8 and len(first.prompts) == len(first.completions) == len(first.metadata) == 8
    assert first.proxy.shape == first.gold.shape == (8,) and first.prompts[0] == first.prompts[1]  # a group
    assert "monitor/gap" in result.curve[0]
    assert (tmp_path / "checkpoints" / "step-00000002").is_dir()  # kept although save_steps is 0


def test_best_of_n_stores_the_samples_it_kept(sft_dir, tmp_path):
    from llm_gym import make_reward
    from llm_gym.tasks import make_task

    agent = make_algorithm("best-of-n", model_name_or_path=str(sft_dir), num_generations=4, batch_size=8)
    result = agent.train(ENV, 8, 0, tmp_path / "run")
    path = tmp_path / "rollouts.jsonl"
    metrics = agent.evaluate(result.checkpoint_dir, ENV, 12, seed=1, rollouts_path=path)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == 12 and all(r["kl"] == pytest.approx(metrics["objective/kl"]) for r in rows)
    assert sum(r["proxy"] for r in rows) / 12 == pytest.approx(metrics["objective/reward"], abs=1e-6)
    assert sum(r["gold"] for r in rows) / 12 == pytest.approx(metrics["objective/gold_reward"], abs=1e-6)
    verifier = make_reward("verifier", task=make_task("arithmetic"))
    rescored = verifier([r["prompt"] for r in rows], [r["completion"] for r in rows], [r["metadata"] for r in rows])
    assert list(rescored) == pytest.approx([r["gold"] for r in rows])


def test_evaluate_appends_rollouts_as_jsonl(sft_dir, tmp_path):
    path = tmp_path / "rollouts.jsonl"
    metrics = evaluate(sft_dir, ENV, 12, seed=1, rollouts_path=path)
    evaluate(sft_dir, ENV, 4, seed=2, rollouts_path=path)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == 16 and set(rows[0]) == {"prompt", "completion", "metadata", "proxy", "gold", "kl"}
    assert all("answer" in r["metadata"] for r in rows)  # what the verifier reads when the rows are rescored
    assert sum(r["proxy"] for r in rows[:12]) / 12 == pytest.approx(metrics["objective/reward"], abs=1e-6)
