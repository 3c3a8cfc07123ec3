"""Performance of the RL agents: sampler vs HF ``generate``, PPO samples/s and peak memory, vs TRL.

Why: "fast rollouts" is a claim; this script measures it on the same tiny model and config for
every contender and writes one JSON file with the hardware, versions and ratios. Run
``python -m benchmarks.perf`` (CPU, or CUDA when present; ``--quick`` for a smoke run).
TRL is measured only when a separate virtualenv with the ``bench-trl`` extra exists
(``--trl-python``, default ``/tmp/trlvenv/bin/python``): it runs ``benchmarks/trl_ppo_bench.py``
there, so TRL is never imported into this environment; when it cannot run, the error is recorded.

Each PPO contender runs in its own subprocess so its peak memory (max RSS, or peak CUDA
allocation) is its own. Throughput is the median over iterations after the first (warm-up).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import gymnasium
import torch

import llm_gym  # noqa: F401
from agents.sampling import sample_completions
from llm_gym.models import TinyModelConfig, load_causal_lm, load_tokenizer, save_tiny
from llm_gym.tasks import make_task

ENV = "llm_gym/Arithmetic-v0"


@dataclass
class PerfConfig:
    """What is measured; the defaults are the ~600k-parameter CPU demo scale (3 layers, 128 wide)."""

    batch_sizes: list[int] = field(default_factory=lambda: [64, 256])
    new_tokens: list[int] = field(default_factory=lambda: [8, 32])
    repeats: int = 5
    ppo_batch_size: int = 64
    ppo_mini_batch_size: int = 16
    ppo_epochs: int = 4
    ppo_iterations: int = 5
    threads: int = 1  # torch threads for every contender (the CPU is shared; 1 is the least noisy)
    trl_python: str = "/tmp/trlvenv/bin/python"


def build_models(root: Path) -> tuple[Path, Path, Path]:
    """Random-init policy (3x128 GPT-2), a 1-layer reward model on its tokenizer, and a prompt file."""
    from transformers import GPT2Config, GPT2ForSequenceClassification

    task = make_task("arithmetic")
    texts = [s.prompt + s.reference for s in task.dataset("train", 2000, seed=0)]
    policy = save_tiny(root / "policy", texts, "char", TinyModelConfig())
    tok = load_tokenizer(policy)
    torch.manual_seed(0)
    rm = GPT2ForSequenceClassification(GPT2Config(
        n_layer=1, n_embd=64, n_head=4, vocab_size=len(tok), num_labels=1, pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id))
    rm.save_pretrained(root / "rm")
    tok.save_pretrained(root / "rm")
    prompts = root / "prompts.json"
    prompts.write_text(json.dumps([s.prompt for s in task.dataset("train", 1024, seed=1)]))
    return policy, root / "rm", prompts


def sampler_vs_generate(policy: Path, batch: int, new_tokens: int, temperature: float, repeats: int,
                        device: torch.device) -> dict[str, float]:
    """Tokens/s of ``sample_completions`` and of ``model.generate`` on the env's left-padded prompts."""
    model, tok = load_causal_lm(policy, device=device)
    model.eval()
    env = gymnasium.make_vec(ENV, num_envs=batch, vectorization_mode="vector_entry_point", granularity="sequence",
                             tokenizer=str(policy), max_new_tokens=new_tokens)
    obs, _ = env.reset(seed=0)
    P = obs["input_ids"].shape[1] - new_tokens
    ids, mask = obs["input_ids"][:, :P].to(device), obs["attention_mask"][:, :P].to(device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)

    def ours() -> int:
        out = sample_completions(model, ids, mask, new_tokens, tok.eos_token_id, tok.pad_token_id, temperature,
                                 generator=torch.Generator(device).manual_seed(0))
        return int(out.mask.sum())

    def hf() -> int:
        kwargs = {"do_sample": True, "temperature": temperature, "top_k": 0} if temperature > 0 else {"do_sample": False}
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens,
                             eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, **kwargs)[:, P:]
        is_eos = out == tok.eos_token_id
        first = torch.where(is_eos.any(1), is_eos.int().argmax(1) + 1, out.shape[1])
        return int(first.sum())

    result = {}
    with torch.no_grad(), autocast:
        for name, fn in (("ours", ours), ("hf_generate", hf)):
            fn()  # warm-up
            rates = []
            for _ in range(repeats):
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                tokens = fn()
                if device.type == "cuda":
                    torch.cuda.synchronize()
                rates.append(tokens / (time.perf_counter() - start))
            result[f"{name}_tokens_per_s"] = statistics.median(rates)
    result["ratio_ours_over_hf"] = result["ours_tokens_per_s"] / result["hf_generate_tokens_per_s"]
    return {"batch": batch, "new_tokens": new_tokens, "temperature": temperature, **result}


def peak_rss_mb() -> float:
    """This process's peak resident memory. ``VmHWM`` is per address space, so unlike ``ru_maxrss`` it does
    not inherit the parent's peak across fork + exec."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ppo_worker(policy: str, rm: str, config: PerfConfig) -> dict[str, float]:
    """Our PPO on the same layout as TRL's run: batch, minibatch, epochs, response length 8, learned RM."""
    from agents.ppo import PPO, PPOConfig

    torch.set_num_threads(config.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    ppo_config = PPOConfig(policy_dir=policy, batch_size=config.ppo_batch_size,
                           mini_batch_size=config.ppo_mini_batch_size, ppo_epochs=config.ppo_epochs,
                           checkpoint_every=0, eval_episodes=8)
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        result = PPO(ppo_config).train(ENV, config.ppo_batch_size * config.ppo_iterations, 0, Path(out),
                                       {"reward": f"learned:path={rm},device={device.type}"})
        total = time.perf_counter() - start
    steady = [config.ppo_batch_size / row["perf/samples_per_s"] for row in result.curve[1:]]
    iteration_s = statistics.median(steady)
    metrics = {"samples_per_s": config.ppo_batch_size / iteration_s, "iteration_s": iteration_s,
               "iterations_timed": len(steady), "total_s": total,
               "rollout_tokens_per_s": statistics.median(row["perf/tokens_per_s"] for row in result.curve[1:]),
               "peak_rss_mb": peak_rss_mb()}
    if device.type == "cuda":
        metrics["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return metrics


def run_subprocess(cmd: list[str], timeout: int = 1800) -> dict:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as err:
        return {"error": f"{type(err).__name__}: {err}"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return {"error": f"exit {done.returncode}: {done.stderr[-1500:]}"}
    return json.loads(lines[-1])


def hardware(device: torch.device) -> dict:
    cpu = platform.processor()
    if Path("/proc/cpuinfo").is_file():
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    info = {"device": str(device), "cpu": cpu, "cpu_count": os.cpu_count(), "platform": platform.platform(),
            "load_average_at_start": os.getloadavg()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
    return info


def versions() -> dict[str, str]:
    import accelerate
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "accelerate": accelerate.__version__, "gymnasium": gymnasium.__version__}


def git_commit() -> str:
    done = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.perf", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=None, help="results JSON (default benchmarks/results/perf_<device>.json)")
    parser.add_argument("--quick", action="store_true", help="one small configuration, 2 repeats")
    parser.add_argument("--trl-python", default=PerfConfig.trl_python)
    parser.add_argument("--worker", choices=["ppo"], help=argparse.SUPPRESS)
    parser.add_argument("--policy", help=argparse.SUPPRESS)
    parser.add_argument("--rm", help=argparse.SUPPRESS)
    parser.add_argument("--config-json", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker == "ppo":
        print(json.dumps(ppo_worker(args.policy, args.rm, PerfConfig(**json.loads(args.config_json)))))
        return 0

    config = PerfConfig(trl_python=args.trl_python)
    if args.quick:
        config = PerfConfig(batch_sizes=[16], new_tokens=[8], repeats=2, ppo_batch_size=16, ppo_mini_batch_size=8,
                            ppo_epochs=1, ppo_iterations=3, trl_python=args.trl_python)
    torch.set_num_threads(config.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    out = Path(args.out or f"benchmarks/results/perf_{device.type}.json")
    record = {"benchmark": "perf", "config": asdict(config), "hardware": hardware(device), "versions": versions(),
              "git_commit": git_commit()}
    with tempfile.TemporaryDirectory() as tmp:
        policy, rm, prompts = build_models(Path(tmp))
        record["model"] = {"policy": "GPT-2 3 layers x 128 (random init, char tokenizer, arithmetic)",
                           "parameters": sum(p.numel() for p in load_causal_lm(policy)[0].parameters()),
                           "reward_model": "GPT-2 1 layer x 64 sequence classifier (random init)"}
        record["sampling"] = [sampler_vs_generate(policy, b, t, temp, config.repeats, device)
                              for b in config.batch_sizes for t in config.new_tokens for temp in (0.0, 1.0)]
        worker = [sys.executable, "-m", "benchmarks.perf", "--worker", "ppo", "--policy", str(policy), "--rm", str(rm),
                  "--config-json", json.dumps(asdict(config))]
        record["ppo"] = run_subprocess(worker)
        trl_cmd = [config.trl_python, str(Path(__file__).with_name("trl_ppo_bench.py")), "--policy", str(policy),
                   "--reward-model", str(rm), "--prompts", str(prompts), "--batch-size", str(config.ppo_batch_size),
                   "--mini-batch-size", str(config.ppo_mini_batch_size), "--epochs", str(config.ppo_epochs),
                   "--iterations", str(config.ppo_iterations), "--threads", str(config.threads)]
        record["trl_ppo"] = (run_subprocess(trl_cmd) if Path(config.trl_python).exists() else
                             {"error": f"no TRL virtualenv at {config.trl_python}: python -m venv /tmp/trlvenv && "
                                       "/tmp/trlvenv/bin/pip install -c constraints.txt '.[bench-trl]'"})
    ratios = {f"sampler_over_generate_b{s['batch']}_t{s['new_tokens']}_temp{s['temperature']}": s["ratio_ours_over_hf"]
              for s in record["sampling"]}
    if "samples_per_s" in record["ppo"] and "samples_per_s" in record["trl_ppo"]:
        ratios["ppo_samples_per_s_ours_over_trl"] = record["ppo"]["samples_per_s"] / record["trl_ppo"]["samples_per_s"]
        ratios["ppo_peak_rss_ours_over_trl"] = record["ppo"]["peak_rss_mb"] / record["trl_ppo"]["peak_rss_mb"]
    record["ratios"] = ratios
    record["not_measured"] = ["TRL's GRPO/RLOO trainers: only TRL's experimental PPO is benchmarked"]
    if device.type == "cpu":
        record["not_measured"].append("GPU figures: no CUDA device on this machine")
    record["hardware"]["load_average_at_end"] = os.getloadavg()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_suffix(".tmp")
    tmp_out.write_text(json.dumps(record, indent=1))
    os.replace(tmp_out, out)
    print(json.dumps(ratios, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
