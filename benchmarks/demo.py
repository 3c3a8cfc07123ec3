"""``llm-gym demo``: the seed's whole RLHF pipeline on a built-in task, offline, on a CPU, in minutes.

tiny model + tokenizer -> instruction tuning (SFT) -> simulated human feedback (the task's gold
verifier, with label noise) -> reward model (Bradley-Terry) -> PPO against the *learned* reward
with a KL leash to the SFT model, the gold reward tracked beside it -> evaluation -> a before/after
table and plots. Each stage writes a ``save_pretrained`` directory or JSONL under ``output_dir`` that
the matching ``llm-gym`` subcommand can also produce or consume on its own; stages already done
(their result file exists) are skipped, so an interrupted demo resumes where it stopped.

The demo checks its own claim: the command exits with status 1, naming the number that fell short, when
PPO's held-out gold reward does not beat the SFT start's by ``CLAIMED_GOLD_GAIN`` or its KL to the SFT
model leaves ``(0, MAX_KL)``. CI runs the command, so the claim is tested there at full size; the test
suite runs the pipeline on a small budget and tests the check itself.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from agents import metrics as M  # noqa: E402
from agents.supervised.data import generate_completions, sample_metadata  # noqa: E402
from agents.rl.ppo import PPO, PPOConfig  # noqa: E402
from agents.rl.evaluation import evaluate  # noqa: E402
from benchmarks.suite import SuiteConfig, prepare_env  # noqa: E402
from llm_gym.commands import add_dataclass_command  # noqa: E402
from llm_gym.models import load_causal_lm  # noqa: E402
from llm_gym.registration import BUILTIN_ENV_IDS  # noqa: E402
from llm_gym.tasks import make_task  # noqa: E402


# Held-out gold on 512 episodes, SFT -> PPO, at the defaults: seeds 0/1/2 on an Intel Xeon 0.307 -> 0.361,
# 0.281 -> 0.338, 0.279 -> 0.338; seed 0 on an AMD EPYC 0.287 -> 0.352. PPO with a constant reward instead
# leaves gold at 0.307 (KL 0.004), so the gain comes from the learned reward. The claimed gain sits below
# the smallest measured one.
CLAIMED_GOLD_GAIN = 0.03
MAX_KL = 2.0  # the KL leash (kl_coef 0.2) holds the policy well inside this


@dataclass
class DemoConfig:
    """Run the whole pipeline on a tiny model: SFT, simulated feedback, reward model, PPO on the learned reward.

    The defaults take about 1 minute on an idle Intel Xeon (1.5 minutes at load 4) and 3 on an AMD EPYC,
    where the trainers run 2-3x slower (benchmarks/results/perf_cpu_amd_epyc.json).
    """

    output_dir: str = field(default="runs/demo", metadata={"help": "directory of every stage's output (rerun to resume)", "path": "output"})
    # Count: its learned reward model is good enough near the SFT policy for PPO to raise the *gold*
    # reward (measured; on arithmetic the tiny reward model stays near chance, and on reverse/sort
    # it is exploited: see benchmarks/results/leaderboard).
    env_id: str = field(default="llm_gym/Count-v0", metadata={"help": "env of a built-in task the demo runs on; its claim (PPO raises gold) is measured on Count, and on a task where the learned reward is exploited instead the command names the shortfall and exits 1"})
    seed: int = field(default=0, metadata={"help": "seed of every stage"})
    sft_steps: int = field(default=100, metadata={"help": "SFT steps; undertrained on purpose (~38%% greedy accuracy) so RL has room"})
    feedback_prompts: int = field(default=1024, metadata={"help": "prompts labelled by the simulated person"})
    feedback_k: int = field(default=4, metadata={"help": "completions per prompt (every pair is labelled)"})
    label_noise: float = field(default=0.1, metadata={"help": "probability that the simulated person flips a label"})
    rm_steps: int = field(default=200, metadata={"help": "reward-model training steps"})
    ppo_budget: int = field(default=64 * 40, metadata={"help": "sampled completions PPO may use"})
    ppo_batch_size: int = field(default=64, metadata={"help": "PPO rollout batch size"})
    ppo_kl_coef: float = field(default=0.2, metadata={"help": "KL leash to the SFT model (firm: tiny learned reward models are easy to exploit)"})
    ppo_lr: float = field(default=1e-4, metadata={"help": "PPO learning rate"})
    eval_episodes: int = field(default=512, metadata={"help": "held-out episodes per evaluated policy"})
    threads: int = field(default=1, metadata={"help": "torch threads (0 keeps torch's default, one per core); the "
                         "demo's models are tiny, and more threads than free cores made it 5-10x slower on a busy machine"})

    def __post_init__(self) -> None:
        if self.env_id not in BUILTIN_ENV_IDS:
            raise ValueError(f"argument --env_id: the demo runs on a built-in task's env, one of {sorted(BUILTIN_ENV_IDS)}; got {self.env_id!r}")

    @property
    def task(self) -> str:
        return BUILTIN_ENV_IDS[self.env_id]


def greedy_accuracy(policy_dir: Path, task_name: str, size: int, seed: int) -> float:
    """Held-out exact task accuracy with greedy decoding (the number an instruction-tuning paper reports)."""
    model, tokenizer = load_causal_lm(policy_dir)
    task = make_task(task_name)
    samples = task.dataset("test", size, seed)
    prompts = [s.prompt for s in samples]
    completions = generate_completions(model, tokenizer, prompts, task.max_new_tokens, batch_size=256)
    return float(task.verify(prompts, completions, [sample_metadata(s) for s in samples]).mean())


def run_demo(config: DemoConfig, console: Console | None = None) -> dict[str, dict[str, float]]:
    console = console or Console()
    if config.threads:
        torch.set_num_threads(config.threads)
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    env_id = config.env_id
    timings: dict[str, float] = {}

    def stage(name: str):
        console.rule(f"[bold]{name}")
        timings[name] = time.perf_counter()

    def done(name: str) -> None:
        timings[name] = time.perf_counter() - timings[name]
        console.print(f"[green]{name} done in {timings[name]:.0f} s")

    stage("1-4. tiny model -> SFT -> simulated feedback -> reward model")
    prepared = prepare_env(
        SuiteConfig(tiny_dir=str(out / "tiny"), sft_dir=str(out / "sft"), feedback_dir=str(out / "feedback"),
                    rm_dir=str(out / "reward_model"), sft_steps={config.task: config.sft_steps},
                    feedback_prompts=config.feedback_prompts, feedback_k=config.feedback_k,
                    label_noise=config.label_noise, rm_steps=config.rm_steps, seed=config.seed),
        config.task, config.task, log=console.print,
    )
    sft_dir, rm_dir = out / "sft", out / "reward_model"
    console.print(f"SFT held-out greedy accuracy {prepared['sft_accuracy']['final']:.1%}; reward model held-out "
                  f"pairwise accuracy {prepared['reward_model_eval'].get('eval/pairwise_accuracy', float('nan')):.1%}")
    done("1-4. tiny model -> SFT -> simulated feedback -> reward model")

    stage("5. PPO against the learned reward model")
    env_kwargs = {"tokenizer": str(sft_dir), "reward": f"learned:path={rm_dir}"}
    ppo = PPO(PPOConfig(model_name_or_path=str(sft_dir), batch_size=config.ppo_batch_size, kl_coef=config.ppo_kl_coef,
                        learning_rate=config.ppo_lr, save_steps=0))
    result = ppo.train(env_id, config.ppo_budget, config.seed, out / "ppo", env_kwargs)
    done("5. PPO against the learned reward model")

    stage("6. evaluation")
    rows = {}
    for name, policy in (("SFT start", sft_dir), ("PPO", result.checkpoint_dir)):
        metrics = evaluate(policy, env_id, config.eval_episodes, config.seed + 1, env_kwargs, reference_dir=sft_dir)
        metrics[M.EVAL_ACCURACY] = greedy_accuracy(Path(policy), config.task, config.eval_episodes, config.seed + 1)
        rows[name] = metrics
    done("6. evaluation")

    _print_table(console, rows)
    _plot(result.curve, out / "demo_curves.png")
    summary = {"config": asdict(config), "results": rows, "timings_s": timings, "prepared": prepared}
    (out / "demo_summary.json").write_text(json.dumps(summary, indent=2))
    console.print(f"wrote {out / 'demo_summary.json'} and {out / 'demo_curves.png'}; total {sum(timings.values()):.0f} s")
    return rows


def _print_table(console: Console, rows: dict[str, dict[str, float]]) -> None:
    columns = [("task accuracy (greedy)", M.EVAL_ACCURACY, "{:.1%}"), ("gold reward", M.GOLD_REWARD, "{:.3f}"),
               ("proxy reward (learned RM)", M.REWARD, "{:.3f}"), ("KL to SFT", M.KL, "{:.3f}")]
    table = Table(title="before / after RL (held-out prompts)")
    table.add_column("policy")
    for header, *_ in columns:
        table.add_column(header, justify="right")
    for name, metrics in rows.items():
        table.add_row(name, *(fmt.format(metrics[key]) for _, key, fmt in columns))
    console.print(table)


def _plot(curve: list[dict[str, float]], path: Path) -> None:
    steps = [point["step"] for point in curve]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in ((M.GOLD_REWARD, "gold reward"), (M.REWARD, "proxy reward (learned RM)")):
        left.plot(steps, [point.get(key, float("nan")) for point in curve], label=label)
    left.set_xlabel("sampled completions")
    left.set_title("PPO: proxy vs gold reward")
    left.legend()
    right.plot(steps, [point.get(M.KL, float("nan")) for point in curve], color="tab:red")
    right.set_xlabel("sampled completions")
    right.set_title("KL to the SFT model")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def claim_shortfalls(rows: dict[str, dict[str, float]]) -> list[str]:
    """What keeps ``run_demo``'s table from showing the demo's claim (empty when it shows it): PPO on the
    learned reward raises held-out gold over the SFT start by ``CLAIMED_GOLD_GAIN``, its proxy reward rises
    too, and its KL to the SFT model stays in ``(0, MAX_KL)``."""
    sft, ppo = rows["SFT start"], rows["PPO"]
    shortfalls = []
    if not ppo[M.GOLD_REWARD] > sft[M.GOLD_REWARD] + CLAIMED_GOLD_GAIN:
        shortfalls.append(f"PPO's gold reward {ppo[M.GOLD_REWARD]:.3f} does not beat the SFT start's "
                          f"{sft[M.GOLD_REWARD]:.3f} by {CLAIMED_GOLD_GAIN}")
    if not ppo[M.REWARD] > sft[M.REWARD]:
        shortfalls.append(f"PPO's proxy reward {ppo[M.REWARD]:.3f} is not above the SFT start's {sft[M.REWARD]:.3f}")
    if not 0 < ppo[M.KL] < MAX_KL:
        shortfalls.append(f"PPO's KL to the SFT model {ppo[M.KL]:.3f} is outside (0, {MAX_KL})")
    return shortfalls


def run_demo_command(config: DemoConfig) -> int:
    """The command: run the demo, then exit with status 1 naming each shortfall when it does not show its claim."""
    shortfalls = claim_shortfalls(run_demo(config))
    for shortfall in shortfalls:
        print(f"llm-gym demo: error: the run does not show what the demo claims: {shortfall}", file=sys.stderr)
    return 1 if shortfalls else 0


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """``llm-gym demo``: the ``llm_gym.commands`` entry point."""
    add_dataclass_command(subparsers, "demo", "run the whole pipeline (SFT -> feedback -> RM -> PPO) on a tiny model",
                          DemoConfig, run_demo_command)
