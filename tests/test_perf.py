"""The sampler case of ``benchmarks.perf`` on a tiny model: its fields, and the model-forward share."""

import torch

from benchmarks.perf import build_models, model_forward_share, ratios_of, sampler_vs_generate


def test_sampler_case_reports_rates_ratio_and_model_share(tmp_path):
    policy, _, _ = build_models(tmp_path)
    row = sampler_vs_generate(policy, batch=4, new_tokens=4, temperature=1.0, repeats=1, device=torch.device("cpu"))
    assert row["ours_tokens_per_s"] > 0 and row["hf_generate_tokens_per_s"] > 0
    assert row["ratio_ours_over_hf"] == row["ours_tokens_per_s"] / row["hf_generate_tokens_per_s"]
    assert 0 < row["ours_model_forward_share"] < 1 and 0 < row["hf_generate_model_forward_share"] < 1


def test_sampler_case_with_compile_adds_the_compiled_contender(tmp_path, monkeypatch):
    """The perf plumbing only (the compiled sampler itself is pinned in test_sampling): compile stubbed out."""
    import agents.rl.sampling as sampling

    monkeypatch.setattr(sampling, "compiled_forward", lambda model: model)
    policy, _, _ = build_models(tmp_path)
    row = sampler_vs_generate(policy, batch=4, new_tokens=4, temperature=1.0, repeats=1, device=torch.device("cpu"),
                              compile=True)
    assert row["ratio_ours_compiled_over_hf"] == row["ours_compiled_tokens_per_s"] / row["hf_generate_tokens_per_s"]
    assert row["ours_compiled_first_call_s"] > 0
    assert ratios_of({"sampling": [row]})["sampler_compiled_over_generate_b4_t4_temp1.0"] == row["ratio_ours_compiled_over_hf"]


def test_the_large_vocabulary_case_reports_its_sampler_ratio_beside_its_memory_ratio():
    memory = {"ours_grpo": {"peak_rss_mb": 900.0}, "trl_grpo": {"peak_rss_mb": 3000.0},
              "sampling": {"batch": 64, "new_tokens": 32, "temperature": 1.0, "ratio_ours_over_hf": 5.0}}
    ratios = ratios_of({"memory": memory})
    assert ratios == {"large_vocab_grpo_peak_rss_ours_over_trl": 0.3, "large_vocab_sampler_over_generate_b64_t32": 5.0}


def test_model_forward_share_counts_only_forward_and_restores_it():
    model = torch.nn.Linear(2, 2)
    forward = model.forward

    def sample():
        model(torch.zeros(1, 2))
        sum(range(200_000))  # time spent outside the model

    share = model_forward_share(model, sample, torch.device("cpu"))
    assert 0 < share < 0.5
    assert model.forward == forward and "forward" not in vars(model)


def test_profiled_reports_top_operators_only_when_enabled():
    from benchmarks.perf import profiled

    off, on = {}, {}
    with profiled(False, off):
        torch.ones(8, 8) @ torch.ones(8, 8)
    with profiled(True, on):
        torch.ones(8, 8) @ torch.ones(8, 8)
    assert off == {}
    assert "aten::mm" in on["profile"]["by_self_cpu_time"] and "Self CPU time total" in on["profile"]["by_self_cpu_time"]


def test_not_measured_names_the_missing_parts_and_the_gpu():
    from benchmarks.perf import not_measured

    missing = not_measured({"runs": {"sampler": {}, "ppo": {}}}, torch.device("cpu"))
    assert [m.split(":")[0] for m in missing] == ["pg", "memory", "GPU figures"]
    assert not_measured({"runs": dict.fromkeys(["sampler", "ppo", "pg", "memory"])}, torch.device("cuda")) == []


def test_padded_vocabulary_grows_the_model_vocabulary_not_the_added_tokens():
    from benchmarks.perf import padded_vocabulary
    from llm_gym.models import train_tokenizer

    base = train_tokenizer(["12+34=46"], "char")
    padded = padded_vocabulary(base, 1000)
    assert len(padded) == 1000 and len(padded.added_tokens_decoder) == len(base.added_tokens_decoder)
    assert padded("12+34=").input_ids == base("12+34=").input_ids
    assert padded.decode([padded.convert_tokens_to_ids("1"), 999]) == f"1<unused_{999 - len(base)}>"
    assert (padded.pad_token_id, padded.eos_token_id, padded.chat_template) == (base.pad_token_id, base.eos_token_id,
                                                                                base.chat_template)


def test_gpu_scripts_parse():
    """CI has no GPU, so nothing else runs these scripts before a lease: at least they must parse."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    for script in ("benchmarks/gpu_checks.sh", "benchmarks/gpu_wheels.sh"):
        done = subprocess.run(["bash", "-n", str(root / script)], capture_output=True, text=True)
        assert done.returncode == 0, (script, done.stderr)


def test_a_sampler_that_fails_to_compile_is_recorded_and_the_other_figures_stand(tmp_path, monkeypatch):
    import agents.rl.sampling as sampling

    def no_compiler(model):
        raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found")

    monkeypatch.setattr(sampling, "compiled_forward", no_compiler)
    policy, _, _ = build_models(tmp_path)
    row = sampler_vs_generate(policy, batch=4, new_tokens=4, temperature=1.0, repeats=1, device=torch.device("cpu"),
                              compile=True)
    assert row["ours_compiled_error"] == "RuntimeError: InvalidCxxCompiler: No working C++ compiler found"
    assert "ratio_ours_compiled_over_hf" not in row and row["ratio_ours_over_hf"] > 0


def test_pg_worker_splits_a_step_into_rollout_and_the_rest(tmp_path):
    from benchmarks.perf import PerfConfig, pg_worker

    policy, _, _ = build_models(tmp_path)
    threads = torch.get_num_threads()
    try:  # the worker pins its process to one thread: give the rest of the session its threads back
        row = pg_worker("grpo", str(policy), PerfConfig(pg_num_prompts=4, pg_group_size=2, pg_steps=3, pg_new_tokens=4))
    finally:
        torch.set_num_threads(threads)
    assert row["steps_timed"] == 2 and 0 < row["rollout_s"] < row["step_s"]
    assert row["samples_per_s"] == 8 / row["step_s"]


def test_contenders_alternate_and_the_median_run_of_each_counts(tmp_path):
    """Fake contenders print their round's rate from a counter file: the order of calls is ours, the peer's,
    ours...; each keeps its median run with every round listed; a failed round is listed, not counted."""
    import sys

    from benchmarks.perf import alternate_rounds

    log = tmp_path / "calls"

    def contender(name: str, rates: list[float | None]) -> list[str]:
        code = (f"import json,pathlib; p=pathlib.Path({str(log)!r}); calls=p.read_text().split() if p.exists() else []; "
                f"n=calls.count({name!r}); p.write_text(' '.join(calls+[{name!r}])); r={rates!r}[n]; "
                "print(json.dumps({'samples_per_s': r, 'peak_rss_mb': 10 * r})) if r is not None else exit(3)")
        return [sys.executable, "-c", code]

    out = alternate_rounds({"ours": contender("ours", [3.0, 1.0, 2.0]), "peer": contender("peer", [5.0, None, 4.0]),
                            "absent": {"error": "no venv"}}, rounds=3)
    assert log.read_text().split() == ["ours", "peer"] * 3
    assert out["ours"]["samples_per_s"] == 2.0 and out["ours"]["peak_rss_mb"] == 20.0  # one real run, whole
    assert out["ours"]["samples_per_s_rounds"] == [3.0, 1.0, 2.0] and "failed_rounds" not in out["ours"]
    assert out["peer"]["samples_per_s"] == 4.0 and out["peer"]["samples_per_s_rounds"] == [5.0, None, 4.0]
    assert len(out["peer"]["failed_rounds"]) == 1 and out["absent"] == {"error": "no venv"}
