"""``python -m benchmarks.ppo_study``: is our PPO competitive with GRPO? One command, resumable, summarised from records.

Why a study apart from the board: the board (``benchmarks.suite``) ranks many algorithms on the
learned-RM track; this asks one question with the verifier as reward, so reward-model error cannot
explain a gap: from the same tiny SFT start, with the board's settings and the same number of
sampled completions, does PPO reach at least GRPO's held-out gold? The stages, in order:

1. ``prepare``: the SFT starts (``benchmarks.suite.prepare_env``: tiny model -> SFT), and the
   reward model of Count for the TRL comparison.
2. ``grid``: PPO, GRPO and the SFT start itself (best-of-1) on Count and Arithmetic, 5 seeds
   (``benchmarks/configs/ppo_vs_grpo.yaml``, run by ``benchmarks.runner``).
3. ``details``: one PPO setting changed at a time from the grid's (``detail_variants``) on one env
   with fewer seeds: which of the N+ details moves held-out gold.
4. ``trl``: TRL 1.12's PPO (``benchmarks.trl_ppo_learner``) against ours on the learned-RM track of
   Count, the same settings and samples, both evaluated by the runner's evaluator.
5. ``summary``: ``summary.json`` and ``README.md`` from the records file alone.

Resumable: a prepared model is skipped when done and the runner skips recorded runs, so rerunning
the command after an interruption finishes only what is missing. Every run evaluates on
``eval_seed + seed``, so runs of two algorithms with one seed share the SFT start and the
evaluation prompts: the comparison is paired by seed.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agents import metrics as M
from benchmarks.grouping import env_name
from benchmarks.records import RunRecord, read_records
from benchmarks.runner import BenchConfig, load_bench_config, run_benchmark
from benchmarks.stats import Estimate, bootstrap, mean_over_groups, probability_of_improvement
from benchmarks.suite import SuiteConfig, env_tasks, prepare_env
from llm_gym.commands import CommandParser, run_cli

STAGES = ("prepare", "grid", "details", "trl", "summary")
LEARNED_RM = "learned-rm"


def _help(text: str, default: Any = dataclasses.MISSING, factory: Any = dataclasses.MISSING) -> Any:
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata={"help": text})
    return field(default=default, metadata={"help": text})


@dataclass
class StudyConfig:
    """The study's grid file, its start models and the extra comparisons (N+ details, TRL's PPO)."""

    bench_config: str = _help("grid YAML: PPO, GRPO and the start on Count and Arithmetic",
                              "benchmarks/configs/ppo_vs_grpo.yaml")
    results_dir: str = _help("summary.json and README.md go here (the records file is the grid's)",
                             "benchmarks/results/ppo_vs_grpo")
    stages: list[str] = _help(f"stages to run, in order, from {list(STAGES)}", factory=lambda: list(STAGES))
    tiny_dir: str = _help("untrained tiny model per env", "runs/ppo_study/tiny-{env}")
    sft_dir: str = _help("SFT start policy per env (the grid's model_name_or_path)", "runs/ppo_study/sft-{env}")
    feedback_dir: str = _help("simulated preference labels for the reward model (trl stage)",
                              "runs/ppo_study/feedback-{env}")
    rm_dir: str = _help("learned reward model (trl stage's proxy)", "runs/ppo_study/rm-{env}")
    # count: the board's 100 steps (38% greedy accuracy). arithmetic: the start's sampled held-out gold
    # (128 episodes, evaluation seeds 10000 / 10001) was 0.047 / 0.070 after 200 steps, 0.109 / 0.141 after
    # 600, 0.125 / 0.156 after 675, 0.734 / 0.758 after 750, 0.859 / 0.906 after 1000 (the learning rate
    # schedule spans max_steps): 675 leaves headroom and a learning signal.
    sft_steps: dict[str, int] = _help("SFT optimizer steps per env short name (undertrained on purpose)",
                                      factory=lambda: {"count": 100, "arithmetic": 675})
    baseline: str = _help("grid label of our PPO", "ppo")
    rival: str = _help("grid label PPO is compared with", "grpo")
    start: str = _help("grid label of the SFT start (best-of-1 trains nothing)", "best-of-n_1")
    detail_env: str = _help("env of the details and TRL stages", "llm_gym/Count-v0")
    detail_seeds: list[int] = _help("seeds of the details and TRL stages", factory=lambda: [0, 1])
    detail_variants: dict[str, dict[str, Any]] = _help(
        "label -> PPO kwargs changed from the grid's PPO, one change at a time",
        factory=lambda: {
            "ppo[whiten_rewards]": {"whiten_rewards": True},
            "ppo[kl_estimator=k3]": {"kl_estimator": "k3"},
            "ppo[lr*0.3]": {"learning_rate": 9.0e-5},
            "ppo[lr*3]": {"learning_rate": 9.0e-4},
            "ppo[kl_coef=0.01]": {"kl_coef": 0.01},
            "ppo[kl_coef=0.2]": {"kl_coef": 0.2},
            "ppo[value_model=separate]": {"value_model": "separate"},
        })
    trl_label: str = _help("row label of TRL's PPO", "trl-ppo")
    trl_python: str = _help("Python of the virtualenv with TRL 1.12 (trl.experimental.ppo)", "/tmp/trlvenv/bin/python")


def _path(template: str, env: str) -> str:
    return template.replace("{env}", env)


def suite_config(config: StudyConfig) -> SuiteConfig:
    """The suite's preparation settings with this study's paths and SFT steps (preparation 0)."""
    return SuiteConfig(tiny_dir=config.tiny_dir, sft_dir=config.sft_dir, feedback_dir=config.feedback_dir,
                       rm_dir=config.rm_dir, sft_steps=dict(config.sft_steps))


def details_grid(config: StudyConfig, bench: BenchConfig) -> BenchConfig:
    """The grid's PPO row plus one row per variant, on ``detail_env`` with ``detail_seeds``.

    The default row keeps the grid's label and settings, so its runs are the grid's (recorded once)."""
    base = bench.algorithms[config.baseline]
    rows = {config.baseline: base}
    for label, change in config.detail_variants.items():
        rows[label] = {**base, "algo": base.get("algo", config.baseline), "kwargs": {**base["kwargs"], **change}}
    return dataclasses.replace(bench, algorithms=rows, envs=[config.detail_env], seeds=list(config.detail_seeds))


def trl_grid(config: StudyConfig, bench: BenchConfig) -> BenchConfig:
    """Our PPO and TRL's on the learned-RM track of ``detail_env``: same kwargs, samples, evaluation."""
    base = bench.algorithms[config.baseline]
    rows = {config.baseline: base, config.trl_label: {
        "algo": config.trl_label, "budget": base.get("budget", bench.budget),
        "kwargs": {**base["kwargs"], "python": config.trl_python}}}
    return dataclasses.replace(
        bench, algorithms=rows, envs=[config.detail_env], seeds=list(config.detail_seeds),
        env_kwargs={**bench.env_kwargs, "reward": f"learned:path={config.rm_dir}"},
        tags={**bench.tags, "track": LEARNED_RM},
        registry={**bench.registry, config.trl_label: "benchmarks.trl_ppo_learner:TRLPPO"})


# ---------------------------------------------------------------------------------------------- summary


def _estimate(e: Estimate) -> dict[str, float]:
    return {"mean": e.point, "low": e.low, "high": e.high}


def _by_seed(records: list[RunRecord], metric: str) -> dict[int, float]:
    out = {}
    for r in records:
        value = r.final.get(metric)
        if value is not None:
            out[r.seed] = float(value)
    return out


def cell(records: list[RunRecord]) -> dict[str, Any]:
    """One (track, env, label) cell: held-out gold mean with its 95% bootstrap CI over seeds, KL, wall time."""
    gold = _by_seed(records, M.GOLD_REWARD)
    kl = _by_seed(records, M.KL)
    values = np.array([gold[s] for s in sorted(gold)])
    return {
        "seeds": sorted(gold),
        "gold": _estimate(bootstrap([values], mean_over_groups)),
        "gold_by_seed": {str(s): gold[s] for s in sorted(gold)},
        "kl": _estimate(bootstrap([np.array([kl[s] for s in sorted(kl)])], mean_over_groups)),
        "wall_s_mean": float(np.mean([r.wall_s for r in records])) if records else float("nan"),
    }


def paired(x: list[RunRecord], y: list[RunRecord]) -> dict[str, Any]:
    """X - Y on held-out gold, paired by seed (same start, same evaluation prompts): the mean difference
    with its 95% bootstrap CI over the seeds both have, and P(X > Y) (``benchmarks.stats``)."""
    gx, gy = _by_seed(x, M.GOLD_REWARD), _by_seed(y, M.GOLD_REWARD)
    seeds = sorted(set(gx) & set(gy))
    diffs = np.array([gx[s] - gy[s] for s in seeds])
    xs, ys = np.array([gx[s] for s in seeds]), np.array([gy[s] for s in seeds])
    return {
        "seeds": seeds,
        "difference": _estimate(bootstrap([diffs], mean_over_groups)),
        "probability_of_improvement": _estimate(probability_of_improvement([xs], [ys])),
    }


def summarize(records: list[RunRecord], config: StudyConfig) -> dict[str, Any]:
    """Everything the README reports, computed from the records alone (see ``write_summary``)."""
    cells: dict[tuple[str, str, str], list[RunRecord]] = defaultdict(list)
    for r in records:
        cells[(r.config.get("tags", {}).get("track", ""), r.env_id, r.algo)].append(r)
    verifier = {k: v for k, v in cells.items() if k[0] != LEARNED_RM}
    envs = sorted({env for _, env, _ in verifier})
    main = {}
    for env in envs:
        rows = {label: cell(runs) for (_, e, label), runs in verifier.items()
                if e == env and label in (config.start, config.baseline, config.rival)}
        entry: dict[str, Any] = {"rows": rows}
        ppo, rival = verifier.get(("verifier", env, config.baseline)), verifier.get(("verifier", env, config.rival))
        if ppo and rival:
            entry[f"{config.baseline} - {config.rival}"] = paired(ppo, rival)
        main[env] = entry
    details = {}
    default = verifier.get(("verifier", config.detail_env, config.baseline), [])
    for label in config.detail_variants:
        runs = verifier.get(("verifier", config.detail_env, label))
        if runs:
            seeds = {r.seed for r in runs}
            details[label] = {**cell(runs), "vs_default": paired(runs, [r for r in default if r.seed in seeds])}
    trl = {}
    ours, theirs = cells.get((LEARNED_RM, config.detail_env, config.baseline)), cells.get(
        (LEARNED_RM, config.detail_env, config.trl_label))
    for label, runs in ((config.baseline, ours), (config.trl_label, theirs)):
        if runs:
            trl[label] = {**cell(runs), "proxy_reward": _estimate(bootstrap(
                [np.array(list(_by_seed(runs, M.REWARD).values()))], mean_over_groups))}
    if ours and theirs:
        trl[f"{config.baseline} - {config.trl_label}"] = paired(ours, theirs)
    return {
        "question": "PPO vs GRPO, verifier reward, tiny SFT start: held-out gold at the same number of samples",
        "commits": sorted({r.git_commit for r in records}),
        "runs": len(records),
        "total_run_wall_s": float(sum(r.wall_s for r in records)),
        "budget": sorted({r.config.get("budget") for r in records if r.algo in (config.baseline, config.rival)}),
        "main": main,
        "details": {"env": config.detail_env, "default": cell(default) if default else None, "variants": details},
        "trl": {"env": config.detail_env, "track": LEARNED_RM, "rows": trl},
    }


def _ci(e: dict[str, float] | None, digits: int = 3) -> str:
    if not e or e["mean"] != e["mean"]:
        return "n/a"
    return f"{e['mean']:.{digits}f} [{e['low']:.{digits}f}, {e['high']:.{digits}f}]"


def summary_tables(summary: dict[str, Any], config: StudyConfig) -> str:
    """The measured part of the README: markdown tables of ``summary`` (numbers only, regenerated)."""
    lines = ["| env | row | seeds | held-out gold (95% CI) | KL to start | wall s/run |", "|---|---|---|---|---|---|"]
    for env, entry in summary["main"].items():
        for label in (config.start, config.baseline, config.rival):
            row = entry["rows"].get(label)
            if row:
                lines.append(f"| {env_name(env)} | {label} | {len(row['seeds'])} | {_ci(row['gold'])} | "
                             f"{_ci(row['kl'], 2)} | {row['wall_s_mean']:.0f} |")
    lines += ["", f"| env | {config.baseline} − {config.rival} gold, paired by seed (95% CI) | "
              f"P({config.baseline} > {config.rival}) (95% CI) | seeds |", "|---|---|---|---|"]
    for env, entry in summary["main"].items():
        diff = entry.get(f"{config.baseline} - {config.rival}")
        if diff:
            lines.append(f"| {env_name(env)} | {_ci(diff['difference'])} | "
                         f"{_ci(diff['probability_of_improvement'], 2)} | {len(diff['seeds'])} |")
    details = summary["details"]
    if details["variants"]:
        lines += ["", f"N+ details on {env_name(details['env'])} (one change from the grid's PPO; difference paired "
                  "with the default's runs of the same seeds):", "",
                  "| row | seeds | held-out gold (95% CI) | − default (95% CI) | KL to start | wall s/run |",
                  "|---|---|---|---|---|---|"]
        if details["default"]:
            d = details["default"]
            lines.append(f"| {config.baseline} (default) | {len(d['seeds'])} | {_ci(d['gold'])} | — | "
                         f"{_ci(d['kl'], 2)} | {d['wall_s_mean']:.0f} |")
        for label, row in details["variants"].items():
            lines.append(f"| {label} | {len(row['seeds'])} | {_ci(row['gold'])} | "
                         f"{_ci(row['vs_default']['difference'])} | {_ci(row['kl'], 2)} | {row['wall_s_mean']:.0f} |")
    trl = summary["trl"]["rows"]
    if trl:
        lines += ["", f"Ours vs TRL 1.12 PPO on {env_name(summary['trl']['env'])}, learned-RM track (proxy = the "
                  "reward model, gold = the verifier):", "",
                  "| row | seeds | held-out gold (95% CI) | proxy reward (95% CI) | KL to start | wall s/run |",
                  "|---|---|---|---|---|---|"]
        for label in (config.baseline, config.trl_label):
            row = trl.get(label)
            if row:
                lines.append(f"| {label} | {len(row['seeds'])} | {_ci(row['gold'])} | {_ci(row['proxy_reward'])} | "
                             f"{_ci(row['kl'], 2)} | {row['wall_s_mean']:.0f} |")
        diff = trl.get(f"{config.baseline} - {config.trl_label}")
        if diff:
            lines += ["", f"{config.baseline} − {config.trl_label} gold, paired by seed: {_ci(diff['difference'])}; "
                      f"P({config.baseline} > {config.trl_label}) = {_ci(diff['probability_of_improvement'], 2)}"]
    lines += ["", f"Runs: {summary['runs']}; summed run wall time {summary['total_run_wall_s'] / 3600:.2f} h "
              "(each run on one torch thread: about its CPU time); "
              f"commit(s): {', '.join(summary['commits'])}."]
    return "\n".join(lines)


MEASURED_BEGIN, MEASURED_END = "<!-- measured: begin -->", "<!-- measured: end -->"


def write_summary(records_path: str | Path, config: StudyConfig) -> dict[str, Any]:
    """``summary.json`` and the measured block of ``README.md`` (between the markers; the prose around it is kept)."""
    summary = summarize(read_records(records_path), config)
    out = Path(config.results_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=1, sort_keys=False) + "\n")
    readme = out / "README.md"
    text = readme.read_text() if readme.is_file() else f"# PPO vs GRPO\n\n{MEASURED_BEGIN}\n{MEASURED_END}\n"
    head, _, rest = text.partition(MEASURED_BEGIN)
    _, _, tail = rest.partition(MEASURED_END)
    readme.write_text(f"{head}{MEASURED_BEGIN}\n{summary_tables(summary, config)}\n{MEASURED_END}{tail}")
    return summary


def run_study(config: StudyConfig, log: Callable[[str], None] = print) -> int:
    """Run the requested stages in order; returns 1 if any run failed."""
    unknown = sorted(set(config.stages) - set(STAGES))
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; stages are {list(STAGES)}")
    bench = load_bench_config(config.bench_config)
    failed = 0
    if "prepare" in config.stages:
        suite = suite_config(config)
        for env, task in env_tasks(bench.envs).items():
            info = prepare_env(suite, env, task, log, upto="sft")
            log(f"[{env}] SFT start: held-out greedy accuracy {info['sft_accuracy']['final']}")
        if "trl" in config.stages:
            detail = env_name(config.detail_env)
            info = prepare_env(suite, detail, detail, log)
            log(f"[{detail}] reward model: {info['reward_model_eval']}")
    grids = {"grid": bench, "details": details_grid(config, bench), "trl": trl_grid(config, bench)}
    for name, grid in grids.items():
        if name in config.stages:
            log(f"== {name}")
            failed += len(run_benchmark(grid, log=log).failed)
    if "summary" in config.stages:
        write_summary(bench.records, config)
        log(f"summary: {Path(config.results_dir) / 'summary.json'} and README.md")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.ppo_study [--option value ...]``: options are ``StudyConfig``'s fields (``--help``)."""
    parser = CommandParser(StudyConfig, prog="python -m benchmarks.ppo_study", description=__doc__.split("\n\n")[0])
    parser.set_defaults(func=lambda args: run_study(*parser.configs_from(args)))
    return run_cli(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
