"""The PPO-vs-GRPO study driver: its summary math on hand-written records, and that it resumes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from agents import metrics as M
from benchmarks import runner
from benchmarks.ppo_study import StudyConfig, details_grid, run_study, summarize, write_summary
from benchmarks.records import RunRecord, append_record, read_records
from benchmarks.runner import load_bench_config, plan_runs

CONFIG = Path(__file__).resolve().parents[1] / "benchmarks/configs/ppo_vs_grpo.yaml"
COUNT, ARITH = "llm_gym/Count-v0", "llm_gym/Arithmetic-v0"


def _record(algo: str, env_id: str, seed: int, gold: float, kl: float = 1.0, track: str = "verifier") -> RunRecord:
    return RunRecord(algo=algo, env_id=env_id, seed=seed, config={"tags": {"track": track}, "budget": 4096},
                     final={M.GOLD_REWARD: gold, M.KL: kl, M.REWARD: gold}, wall_s=10.0, git_commit="abc")


def _bootstrap_mean_ci(values: np.ndarray) -> tuple[float, float]:
    """The percentile bootstrap of a mean, written out: 2000 resamples of the seeds, seed 0."""
    draws = values[np.random.default_rng(0).integers(0, len(values), size=(2000, len(values)))].mean(axis=1)
    low, high = np.percentile(draws, [2.5, 97.5])
    return float(low), float(high)


def test_summary_pairs_seeds_and_computes_the_difference_ci_and_probability_of_improvement(tmp_path):
    ppo, grpo = [0.5, 0.6, 0.7], [0.55, 0.4, 0.3]
    records = [_record("grpo", COUNT, s, g) for s, g in zip([2, 1, 0], grpo[::-1])]  # any order
    records += [_record("ppo", COUNT, s, g) for s, g in enumerate(ppo)]
    records += [_record("ppo", COUNT, 7, 0.0)]  # no GRPO run with seed 7: not in the paired difference
    records += [_record("best-of-n_1", COUNT, s, 0.25, kl=0.0) for s in range(3)]
    records += [_record("ppo", ARITH, 0, 0.2), _record("ppo", COUNT, 0, 0.9, track="learned-rm")]  # other cells
    summary = summarize(records, StudyConfig())

    count = summary["main"][COUNT]
    diff = count["ppo - grpo"]
    assert diff["seeds"] == [0, 1, 2]
    diffs = np.array(ppo) - np.array(grpo)
    assert diff["difference"]["mean"] == pytest.approx(diffs.mean())
    low, high = _bootstrap_mean_ci(diffs)
    assert (diff["difference"]["low"], diff["difference"]["high"]) == pytest.approx((low, high))
    # P(ppo > grpo) over all 9 pairs: 0.5 beats 0.4, 0.3; 0.6 and 0.7 beat all three.
    assert diff["probability_of_improvement"]["mean"] == pytest.approx(8 / 9)

    rows = count["rows"]
    assert rows["ppo"]["seeds"] == [0, 1, 2, 7]
    assert rows["ppo"]["gold"]["mean"] == pytest.approx(np.mean(ppo + [0.0]))
    assert rows["best-of-n_1"]["gold"] == {"mean": 0.25, "low": 0.25, "high": 0.25}
    assert rows["best-of-n_1"]["kl"]["mean"] == 0.0
    assert "ppo - grpo" not in summary["main"][ARITH]  # no GRPO there: no comparison
    assert summary["trl"]["rows"]["ppo"]["gold"]["mean"] == 0.9  # the learned-RM track is kept apart
    assert summary["runs"] == len(records) and summary["total_run_wall_s"] == 10.0 * len(records)

    path = tmp_path / "records.jsonl"
    for r in records:
        append_record(path, r)
    config = StudyConfig(results_dir=str(tmp_path / "out"))
    written = write_summary(path, config)
    assert json.loads((tmp_path / "out/summary.json").read_text())["main"][COUNT]["ppo - grpo"] == written["main"][COUNT]["ppo - grpo"]
    readme = tmp_path / "out/README.md"
    readme.write_text(readme.read_text().replace("# PPO vs GRPO", "# PPO vs GRPO\n\nprose kept"))
    write_summary(path, config)
    text = readme.read_text()
    assert "prose kept" in text and text.count("| count | ppo |") == 1  # regenerated in place, not appended


def test_details_reuse_the_grids_ppo_runs_and_change_one_setting_each():
    config, bench = StudyConfig(), load_bench_config(CONFIG)
    grid = details_grid(config, bench)
    base = bench.algorithms["ppo"]["kwargs"]
    assert grid.algorithms["ppo"] == bench.algorithms["ppo"]
    for label, change in config.detail_variants.items():
        kwargs = grid.algorithms[label]["kwargs"]
        assert {k for k in kwargs if kwargs[k] != base.get(k)} == set(change), label
    main_keys = {s.key for s in plan_runs(bench)}
    detail_ppo = [s for s in plan_runs(grid) if s.algo == "ppo"]
    assert detail_ppo and all(s.key in main_keys for s in detail_ppo)  # recorded once, shared


def test_the_study_skips_recorded_runs_and_runs_only_the_missing_one(tmp_path, monkeypatch):
    values = yaml.safe_load(CONFIG.read_text())
    values.update(records=str(tmp_path / "records.jsonl"), out_dir=str(tmp_path / "runs"), require_clean=False)
    bench_path = tmp_path / "grid.yaml"
    bench_path.write_text(yaml.safe_dump(values))
    config = StudyConfig(bench_config=str(bench_path), results_dir=str(tmp_path / "out"),
                         stages=["grid", "details", "summary"])
    bench = load_bench_config(bench_path)
    specs = {s.key: s for grid in (bench, details_grid(config, bench)) for s in plan_runs(grid)}
    missing = next(s for s in specs.values() if s.algo == "grpo")
    for spec in specs.values():
        if spec is not missing:
            append_record(bench.records, RunRecord(algo=spec.algo, env_id=spec.env_id, seed=spec.seed,
                                                   config=spec.config, final={M.GOLD_REWARD: 0.3, M.KL: 1.0}))
    ran = []

    def fake_processes(todo, workers, finished):
        for spec in todo:
            ran.append(spec.key)
            finished(spec, RunRecord(algo=spec.algo, env_id=spec.env_id, seed=spec.seed, config=spec.config,
                                     final={M.GOLD_REWARD: 0.4, M.KL: 1.0}), None)

    monkeypatch.setattr(runner, "_run_processes", fake_processes)
    monkeypatch.setattr(runner, "check_grid", lambda specs: None)  # no SFT models here: nothing is built
    assert run_study(config, log=lambda _: None) == 0
    assert ran == [missing.key]
    assert run_study(config, log=lambda _: None) == 0
    assert ran == [missing.key]  # everything recorded now: nothing reruns
    assert len(read_records(bench.records)) == len(specs)
    summary = json.loads((tmp_path / "out/summary.json").read_text())
    assert summary["main"][missing.env_id]["rows"]["grpo"]["gold"]["mean"] == pytest.approx((0.4 + 0.3 * 4) / 5)


def test_trl_reward_model_scores_a_response_ending_in_eos_as_the_response_without_it():
    """TRL's PPO reads the reward at the last non-pad token, the EOS; after ``score_before_eos`` that
    equals the unwrapped model's score of the same text without EOS (what our env and RM training use)."""
    import torch
    from transformers import GPT2Config, GPT2ForSequenceClassification

    from benchmarks.trl_ppo_train import score_before_eos

    torch.manual_seed(0)
    model = GPT2ForSequenceClassification(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=12, num_labels=1,
                                                     pad_token_id=0)).eval()
    eos, pad = 2, 0

    def trl_score(rows: list[list[int]]) -> torch.Tensor:  # trl.experimental.utils.get_reward, written out
        ids = torch.tensor(rows)
        mask = ids != pad
        out = getattr(model, model.base_model_prefix)(input_ids=ids, attention_mask=mask, position_ids=mask.cumsum(1) - mask.long(),
                                                      return_dict=True, output_hidden_states=True, use_cache=False)
        last = mask.long().cumsum(1).argmax(1)
        return model.score(out.hidden_states[-1])[torch.arange(len(rows)), last, 0]

    with_eos, without = [[pad, 1, 5, 7, 3, eos], [1, 4, 4, 6, 9, eos]], [[pad, pad, 1, 5, 7, 3], [pad, 1, 4, 4, 6, 9]]
    expected = trl_score(without)
    assert not torch.allclose(trl_score(with_eos), expected, atol=1e-4)  # the EOS moves the score
    score_before_eos(model, eos)
    with torch.no_grad():
        assert torch.allclose(trl_score(with_eos), expected, atol=1e-5)
        assert torch.allclose(trl_score(without), expected, atol=1e-5)  # no EOS: nothing changes
