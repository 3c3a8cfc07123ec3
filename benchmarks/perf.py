"""Performance of the RL agents: sampler vs HF ``generate``, PPO/GRPO/RLOO samples/s and peak memory, vs TRL.

Why: "fast rollouts" is a claim; this script measures it on the same tiny model and config for
every contender and writes one JSON file with the hardware, versions and ratios. Run
``python -m benchmarks.perf`` (CPU, or CUDA when present; ``--quick`` for a smoke run).
TRL is measured only when a separate virtualenv with the ``bench-trl`` extra exists
(``--trl-python``, default ``/tmp/trlvenv/bin/python``): it runs ``benchmarks/trl_ppo_bench.py``
there, so TRL is never imported into this environment; when it cannot run, the error is recorded.
GRPO and RLOO are compared with the current TRL's ``GRPOTrainer`` / ``RLOOTrainer`` the same way,
through ``benchmarks/trl_pg_bench.py`` in a second virtualenv (``--trl-pg-python``, default
``/tmp/trl16venv/bin/python``; the ``bench-trl-grpo`` extra). The large-vocabulary case
(``memory``) trains GRPO for two steps with a 151,936-token vocabulary (Qwen2's) and 512 new tokens on
both sides, at the same batch, and reports the two peak memories; it also times our sampler against
``generate`` on that model (batch 64, 32 tokens), where drawing from the vocabulary costs more than the
model. ``--only sampler|ppo|pg|memory`` re-measures one part and keeps the other entries of the results file. The sampler case also reports the
share of our sampler's time spent in the model's forward and of ``generate``'s (``*_model_forward_share``,
timed in separate calls; the KV-cache update and mask construction happen inside the forward): it shows
whether a contender's time goes to its decoding loop or to the forward and its cache. Every part records the load
average (``uptime``) at its start and end: on a shared machine compare ratios within one run.
``--profile`` adds our workers' top operators (``torch.profiler``) to the record, for a diagnosis.

Each PPO/GRPO/RLOO contender runs in its own subprocess so its peak memory (max RSS, or peak CUDA
allocation) is its own. Throughput is the median over iterations after the first (warm-up); ours and the
peer's run alternately ``rounds`` times (default 3) and the median run of each is reported, with every
round's samples/s beside it.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium
import torch
from tokenizers import Tokenizer
from transformers import PreTrainedTokenizerFast

import llm_gym  # noqa: F401
from agents import metrics as M
from agents.rl.sampling import sample_completions
from llm_gym.models import TinyModelConfig, build_tiny_model, load_causal_lm, load_tokenizer, train_tokenizer
from llm_gym.tasks import make_task
from benchmarks.peak_memory import peak_rss_mb
from benchmarks.records import git_commit

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
    rounds: int = 3  # PPO, GRPO, RLOO: ours and the peer's run alternately this many times; the median run counts
    trl_python: str = "/tmp/trlvenv/bin/python"
    pg_num_prompts: int = 16  # GRPO/RLOO: prompts per step x group_size completions each = one optimizer step
    pg_group_size: int = 4
    pg_new_tokens: int = 8
    pg_kl_coef: float = 0.05
    pg_steps: int = 20
    trl_pg_python: str = "/tmp/trl16venv/bin/python"
    memory_vocab: int = 151_936  # the large-vocabulary memory case (Qwen2's vocabulary size)
    memory_new_tokens: int = 512
    memory_num_prompts: int = 2  # x memory_group_size completions: the batch both sides train on
    memory_group_size: int = 2
    memory_steps: int = 2
    memory_sampler_batch: int = 64  # the large-vocabulary model's sampler vs generate, at this batch...
    memory_sampler_new_tokens: int = 32  # ...and this many new tokens, temperature 1
    policy_shape: str = "tiny"  # a POLICY_SHAPES key: "0.5b" for GPU runs
    profile: bool = False  # our workers run under torch.profiler and report their top operators (slows them)


POLICY_SHAPES = {
    # the CPU scale every committed CPU figure uses
    "tiny": (TinyModelConfig(), None),
    # a Qwen2-0.5B-class shape for GPU runs: 24 Llama layers 896 wide, 14 heads, Qwen2's vocabulary size
    "0.5b": (TinyModelConfig(family="llama", n_layer=24, n_embd=896, n_head=14, max_positions=1024), 151_936),
}


def arithmetic_policy(out_dir: Path, model_config: TinyModelConfig, vocab_size: int | None = None) -> Path:
    """A random-init policy with the arithmetic char tokenizer; ``vocab_size`` pads the vocabulary with unused
    tokens, giving the (batch x tokens x vocab) logits of a real large-vocabulary model."""
    task = make_task("arithmetic")
    tokenizer = train_tokenizer([s.prompt + s.reference for s in task.dataset("train", 2000, seed=0)], "char")
    if vocab_size:
        tokenizer = padded_vocabulary(tokenizer, vocab_size)
    build_tiny_model(tokenizer, model_config).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def padded_vocabulary(tokenizer: PreTrainedTokenizerFast, vocab_size: int) -> PreTrainedTokenizerFast:
    """``tokenizer`` with unused entries in its model's vocabulary up to ``vocab_size`` tokens.

    Entries of the vocabulary, as in a real large-vocabulary tokenizer, not added tokens: transformers
    copies and indexes added tokens in Python on every load, which with 150k of them takes seconds per
    load, a cost no real tokenizer has and that would land in every contender's set-up time."""
    state = json.loads(tokenizer.backend_tokenizer.to_str())
    vocab = state["model"]["vocab"]
    vocab.update({f"<unused_{i}>": len(vocab) + i for i in range(vocab_size - len(tokenizer))})
    padded = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(state)),
                                     **tokenizer.special_tokens_map)
    padded.chat_template = tokenizer.chat_template
    return padded


def build_models(root: Path, shape: str = "tiny") -> tuple[Path, Path, Path]:
    """Random-init policy (``POLICY_SHAPES``), a 1-layer reward model on its tokenizer, and a prompt file."""
    from transformers import GPT2Config, GPT2ForSequenceClassification

    policy = arithmetic_policy(root / "policy", *POLICY_SHAPES[shape])
    tok = load_tokenizer(policy)
    torch.manual_seed(0)
    rm = GPT2ForSequenceClassification(GPT2Config(
        n_layer=1, n_embd=64, n_head=4, vocab_size=len(tok), num_labels=1, pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id))
    rm.save_pretrained(root / "rm")
    tok.save_pretrained(root / "rm")
    prompts = root / "prompts.json"
    prompts.write_text(json.dumps([s.prompt for s in make_task("arithmetic").dataset("train", 1024, seed=1)]))
    return policy, root / "rm", prompts


def sampler_vs_generate(policy: Path, batch: int, new_tokens: int, temperature: float, repeats: int,
                        device: torch.device, compile: bool = False) -> dict[str, float]:
    """Tokens/s of ``sample_completions`` and of ``model.generate`` on the env's left-padded prompts; with
    ``compile``, also of ``sample_completions(compile=True)`` and its first call (the compile included).
    ``generate`` stays eager: transformers compiles its decoding step only with a static cache on an
    accelerator, and eager is what a user of ``generate`` on a CPU gets."""
    model, tok = load_causal_lm(policy, device=device)
    model.eval()
    env = gymnasium.make_vec(ENV, num_envs=batch, vectorization_mode="vector_entry_point", granularity="sequence",
                             tokenizer=str(policy), max_new_tokens=new_tokens)
    obs, _ = env.reset(seed=0)
    P = obs["input_ids"].shape[1] - new_tokens
    ids, mask = obs["input_ids"][:, :P].to(device), obs["attention_mask"][:, :P].to(device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)

    def ours(compile: bool = False) -> int:
        out = sample_completions(model, ids, mask, new_tokens, tok.eos_token_id, tok.pad_token_id, temperature,
                                 generator=torch.Generator(device).manual_seed(0), compile=compile)
        return int(out.mask.sum())

    ours_compiled = functools.partial(ours, compile=True)

    def hf() -> int:
        kwargs = {"do_sample": True, "temperature": temperature, "top_k": 0} if temperature > 0 else {"do_sample": False}
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens,
                             eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, **kwargs)[:, P:]
        is_eos = out == tok.eos_token_id
        first = torch.where(is_eos.any(1), is_eos.int().argmax(1) + 1, out.shape[1])
        return int(first.sum())

    def tokens_per_s(fn) -> float:
        rates = []
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            tokens = fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            rates.append(tokens / (time.perf_counter() - start))
        return statistics.median(rates)

    result = {}
    with torch.no_grad(), autocast:
        for name, fn in (("ours", ours), ("hf_generate", hf)):
            fn()  # warm-up
            result[f"{name}_tokens_per_s"] = tokens_per_s(fn)
        result["ours_model_forward_share"] = model_forward_share(model, ours, device)
        result["hf_generate_model_forward_share"] = model_forward_share(model, hf, device)
        if compile:
            start = time.perf_counter()
            try:
                ours_compiled()  # the compile, then a warm call
            except Exception as err:  # no C++ compiler, no triton: recorded, and the other figures stand
                result["ours_compiled_error"] = f"{type(err).__name__}: {err}"[:500]
            else:
                result["ours_compiled_first_call_s"] = time.perf_counter() - start
                result["ours_compiled_tokens_per_s"] = tokens_per_s(ours_compiled)
    result["ratio_ours_over_hf"] = result["ours_tokens_per_s"] / result["hf_generate_tokens_per_s"]
    if "ours_compiled_tokens_per_s" in result:
        result["ratio_ours_compiled_over_hf"] = result["ours_compiled_tokens_per_s"] / result["hf_generate_tokens_per_s"]
    return {"batch": batch, "new_tokens": new_tokens, "temperature": temperature, **result}


def model_forward_share(model: torch.nn.Module, sample, device: torch.device) -> float:
    """The fraction of one ``sample()`` call spent inside ``model.forward``, timed in a separate call.

    HF runs the KV-cache update and the attention-mask construction inside ``forward``, so this share
    counts them as the model's: it says how much of a contender's time is its decoding loop (sampling,
    stopping, bookkeeping) and how much is the forward with its cache, not which of the two is faster."""
    spent = 0.0
    forward = model.forward

    def timed(*args, **kwargs):
        nonlocal spent
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = forward(*args, **kwargs)
        if device.type == "cuda":
            torch.cuda.synchronize()
        spent += time.perf_counter() - start
        return out

    model.forward = timed
    try:
        start = time.perf_counter()
        sample()
        total = time.perf_counter() - start
    finally:
        del model.forward
    return spent / total


@contextlib.contextmanager
def profiled(enabled: bool, into: dict[str, Any], rows: int = 25) -> Iterator[None]:
    """Run the body under ``torch.profiler`` when ``enabled`` and put its top operators, by self CPU time and
    (on CUDA) by self device time, into ``into["profile"]``: where a worker's time goes, from a machine that
    may be lent only briefly (the profiler slows the worker, so its timings are not the figures)."""
    if not enabled:
        yield
        return
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities) as prof:
        yield
    table = prof.key_averages()
    into["profile"] = {"by_self_cpu_time": table.table(sort_by="self_cpu_time_total", row_limit=rows)}
    if torch.cuda.is_available():
        into["profile"]["by_self_device_time"] = table.table(sort_by="self_device_time_total", row_limit=rows)


def ppo_worker(policy: str, rm: str, config: PerfConfig) -> dict[str, Any]:
    """Our PPO on the same layout as TRL's run: batch, minibatch, epochs, response length 8, learned RM."""
    from agents.rl.ppo import PPO, PPOConfig

    torch.set_num_threads(config.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    ppo_config = PPOConfig(model_name_or_path=policy, batch_size=config.ppo_batch_size,
                           num_mini_batches=config.ppo_batch_size // config.ppo_mini_batch_size,
                           num_ppo_epochs=config.ppo_epochs, save_steps=0, eval_episodes=8)
    profile: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as out, profiled(config.profile, profile):
        start = time.perf_counter()
        result = PPO(ppo_config).train(ENV, config.ppo_batch_size * config.ppo_iterations, 0, Path(out),
                                       {"reward": f"learned:path={rm},device={device.type}"})
        total = time.perf_counter() - start
    steady = [config.ppo_batch_size / row[M.SAMPLES_PER_S] for row in result.curve[1:]]
    iteration_s = statistics.median(steady)
    metrics = {"samples_per_s": config.ppo_batch_size / iteration_s, "iteration_s": iteration_s,
               "iterations_timed": len(steady), "total_s": total,
               "rollout_tokens_per_s": statistics.median(row[M.TOKENS_PER_S] for row in result.curve[1:]),
               "peak_rss_mb": peak_rss_mb()}
    if device.type == "cuda":
        metrics["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return {**metrics, **profile}


def pg_worker(algo: str, policy: str, config: PerfConfig) -> dict[str, Any]:
    """Our GRPO or RLOO on TRL's layout: every step samples num_prompts x group_size completions and takes
    one optimizer step on all of them (epochs 1, one minibatch), exact-match reward, KL coefficient as TRL's beta."""
    from agents.rl.registry import make_algorithm

    torch.set_num_threads(config.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    batch = config.pg_num_prompts * config.pg_group_size
    kl = {"beta": config.pg_kl_coef} if algo == "grpo" else {"kl_coef": config.pg_kl_coef}
    agent = make_algorithm(algo, model_name_or_path=policy, batch_size=batch, num_generations=config.pg_group_size,
                           num_mini_batches=1, num_ppo_epochs=1, save_steps=0, eval_episodes=min(8, batch), **kl)
    profile: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as out, profiled(config.profile, profile):
        start = time.perf_counter()
        result = agent.train(ENV, batch * config.pg_steps, 0, Path(out),
                             {"reward": "exact_match", "max_new_tokens": config.pg_new_tokens})
        total = time.perf_counter() - start
    step_s = statistics.median(batch / row[M.SAMPLES_PER_S] for row in result.curve[1:])
    # the rollout part of a step (sampling and the env's scoring): its tokens over the rollout's tokens/s, so a
    # slow step says whether the rollout or the update is slow
    rollout_s = statistics.median(batch * row[M.EPISODE_LENGTH] / row[M.TOKENS_PER_S] for row in result.curve[1:])
    metrics = {"samples_per_s": batch / step_s, "step_s": step_s, "rollout_s": rollout_s,
               "steps_timed": len(result.curve) - 1, "total_s": total, "peak_rss_mb": peak_rss_mb()}
    if device.type == "cuda":
        metrics["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return {**metrics, **profile}


def measure_pg(policy: Path, prompts: Path, config: PerfConfig, algos: tuple[str, ...] = ("grpo", "rloo")
               ) -> dict[str, dict]:
    """Ours and TRL's GRPO and RLOO, each in its own subprocess, on the same model, prompts and layout,
    alternating for ``config.rounds`` rounds."""
    results = {}
    for algo in algos:
        ours = [sys.executable, "-m", "benchmarks.perf", "--worker", algo, "--policy", str(policy), "--config-json",
                json.dumps(asdict(config))]
        trl_cmd = [config.trl_pg_python, str(Path(__file__).with_name("trl_pg_bench.py")), "--algo", algo,
                   "--policy", str(policy), "--prompts", str(prompts), "--num-prompts", str(config.pg_num_prompts),
                   "--group-size", str(config.pg_group_size), "--steps", str(config.pg_steps),
                   "--completion-length", str(config.pg_new_tokens), "--kl-coef", str(config.pg_kl_coef),
                   "--threads", str(config.threads)]
        missing = {"error": f"no TRL virtualenv at {config.trl_pg_python}: python -m venv /tmp/trl16venv "
                            "&& /tmp/trl16venv/bin/pip install torch==2.13.0 'trl>=1.16'"}
        results.update(alternate_rounds({algo: ours, f"trl_{algo}": trl_cmd if Path(config.trl_pg_python).exists()
                                         else missing}, config.rounds))
    return results


def pg_ratios(record: dict) -> dict[str, float]:
    ratios = {}
    for algo in ("grpo", "rloo"):
        ours, trl = record.get(algo, {}), record.get(f"trl_{algo}", {})
        if "samples_per_s" in ours and "samples_per_s" in trl:
            ratios[f"{algo}_samples_per_s_ours_over_trl"] = ours["samples_per_s"] / trl["samples_per_s"]
            ratios[f"{algo}_peak_rss_ours_over_trl"] = ours["peak_rss_mb"] / trl["peak_rss_mb"]
    return ratios


def run_subprocess(cmd: list[str], timeout: int = 1800) -> dict:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as err:
        return {"error": f"{type(err).__name__}: {err}"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return {"error": f"exit {done.returncode}: {done.stderr[-1500:]}"}
    return json.loads(lines[-1])


def alternate_rounds(contenders: dict[str, list[str] | dict], rounds: int) -> dict[str, dict]:
    """Run every contender's command once per round, in turn (ours, the peer's, ours...), ``rounds`` times,
    and keep each contender's median run by samples/s, with every round's samples/s beside it.

    Why alternate: on a shared machine the load drifts over minutes; runs interleaved in time see the
    same drift, so the ratio of the medians is steadier than two back-to-back single runs (on the CPU
    machine, single-run PPO ratios of 2.83, 3.04 and 3.14 were measured on one idle day). A contender
    given as a dict (an error, say) is reported as it is. A failed round is listed, not counted."""
    runs: dict[str, list[dict]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, cmd in contenders.items():
            if isinstance(cmd, list):
                runs[name].append(run_subprocess(cmd))
    out = {}
    for name, cmd in contenders.items():
        good = sorted((r for r in runs[name] if "samples_per_s" in r), key=lambda r: r["samples_per_s"])
        if not isinstance(cmd, list):
            out[name] = cmd
        elif not good:
            out[name] = runs[name][0]
        else:
            median = good[(len(good) - 1) // 2]  # the lower median: an actual run, never an average of two
            out[name] = {**median, "samples_per_s_rounds": [r.get("samples_per_s") for r in runs[name]],
                         **({"failed_rounds": [r["error"] for r in runs[name] if "error" in r]}
                            if len(good) < len(runs[name]) else {})}
    return out


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


PARTS = ("sampler", "ppo", "pg", "memory")


def measure_sampler(policy: Path, rm: Path, prompts: Path, config: PerfConfig, device: torch.device) -> dict:
    return {"sampling": [sampler_vs_generate(policy, b, t, temp, config.repeats, device, compile=temp > 0)
                         for b in config.batch_sizes for t in config.new_tokens for temp in (0.0, 1.0)]}


def measure_ppo(policy: Path, rm: Path, prompts: Path, config: PerfConfig, device: torch.device) -> dict:
    """Our PPO and TRL 1.12's, each in its own subprocess, alternating for ``config.rounds`` rounds."""
    worker = [sys.executable, "-m", "benchmarks.perf", "--worker", "ppo", "--policy", str(policy), "--rm", str(rm),
              "--config-json", json.dumps(asdict(config))]
    trl_cmd = [config.trl_python, str(Path(__file__).with_name("trl_ppo_bench.py")), "--policy", str(policy),
               "--reward-model", str(rm), "--prompts", str(prompts), "--batch-size", str(config.ppo_batch_size),
               "--mini-batch-size", str(config.ppo_mini_batch_size), "--epochs", str(config.ppo_epochs),
               "--iterations", str(config.ppo_iterations), "--threads", str(config.threads)]
    missing = {"error": f"no TRL virtualenv at {config.trl_python}: python -m venv /tmp/trlvenv && "
                        "/tmp/trlvenv/bin/pip install -c constraints.txt '.[bench-trl]'"}
    return alternate_rounds({"ppo": worker, "trl_ppo": trl_cmd if Path(config.trl_python).exists() else missing},
                            config.rounds)


def measure_pg_part(policy: Path, rm: Path, prompts: Path, config: PerfConfig, device: torch.device) -> dict:
    return measure_pg(policy, prompts, config)


def measure_memory(policy: Path, rm: Path, prompts: Path, config: PerfConfig, device: torch.device) -> dict:
    """GRPO, ours and TRL's, for ``memory_steps`` steps with a ``memory_vocab`` vocabulary and
    ``memory_new_tokens`` new tokens at the same batch: the peak memory of each."""
    large = arithmetic_policy(policy.parent / "large_vocab_policy", TinyModelConfig(
        n_layer=2, n_embd=64, n_head=4, max_positions=config.memory_new_tokens + 64), config.memory_vocab)
    case = PerfConfig(**{**asdict(config), "pg_num_prompts": config.memory_num_prompts,
                         "pg_group_size": config.memory_group_size, "pg_new_tokens": config.memory_new_tokens,
                         "pg_steps": config.memory_steps, "rounds": 1})  # peak memory does not drift with load
    results = measure_pg(large, prompts, case, algos=("grpo",))
    sampling = sampler_vs_generate(large, config.memory_sampler_batch, config.memory_sampler_new_tokens, 1.0,
                                   min(config.repeats, 3), device)  # the draw over the vocabulary, not the model, dominates
    return {"memory": {"vocab_size": config.memory_vocab, "new_tokens": config.memory_new_tokens,
                       "batch": config.memory_num_prompts * config.memory_group_size,
                       "model": "GPT-2 2 layers x 64 (random init), tied embeddings",
                       "ours_grpo": results["grpo"], "trl_grpo": results["trl_grpo"], "sampling": sampling}}


MEASURE = {"sampler": measure_sampler, "ppo": measure_ppo, "pg": measure_pg_part, "memory": measure_memory}


def not_measured(record: dict, device: torch.device) -> list[str]:
    """What the record lacks: parts never run into it, and GPU figures on a CPU machine."""
    missing = [f"{part}: not measured into this file yet (python -m benchmarks.perf --only {part})"
               for part in PARTS if part not in record.get("runs", {})]
    return missing + (["GPU figures: no CUDA device on this machine"] if device.type == "cpu" else [])


def ratios_of(record: dict) -> dict[str, float]:
    """Every ratio the record's entries allow (ours over the peer's; > 1 is faster, < 1 uses less memory)."""
    ratios = {f"sampler_over_generate_b{s['batch']}_t{s['new_tokens']}_temp{s['temperature']}": s["ratio_ours_over_hf"]
              for s in record.get("sampling", [])}
    ratios.update({f"sampler_compiled_over_generate_b{s['batch']}_t{s['new_tokens']}_temp{s['temperature']}":
                   s["ratio_ours_compiled_over_hf"] for s in record.get("sampling", []) if "ratio_ours_compiled_over_hf" in s})
    ours, trl = record.get("ppo", {}), record.get("trl_ppo", {})
    if "samples_per_s" in ours and "samples_per_s" in trl:
        ratios["ppo_samples_per_s_ours_over_trl"] = ours["samples_per_s"] / trl["samples_per_s"]
        ratios["ppo_peak_rss_ours_over_trl"] = ours["peak_rss_mb"] / trl["peak_rss_mb"]
    memory = record.get("memory", {})
    ours, trl = memory.get("ours_grpo", {}), memory.get("trl_grpo", {})
    if "peak_rss_mb" in ours and "peak_rss_mb" in trl:
        ratios["large_vocab_grpo_peak_rss_ours_over_trl"] = ours["peak_rss_mb"] / trl["peak_rss_mb"]
        if "peak_gpu_mb" in ours and "peak_gpu_mb" in trl:
            ratios["large_vocab_grpo_peak_gpu_ours_over_trl"] = ours["peak_gpu_mb"] / trl["peak_gpu_mb"]
    if "sampling" in memory:
        case = memory["sampling"]
        ratios[f"large_vocab_sampler_over_generate_b{case['batch']}_t{case['new_tokens']}"] = case["ratio_ours_over_hf"]
    return {**ratios, **pg_ratios(record)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.perf", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=None, help="results JSON (default benchmarks/results/perf_<device>.json)")
    parser.add_argument("--quick", action="store_true", help="one small configuration, 2 repeats")
    parser.add_argument("--trl-python", default=PerfConfig.trl_python)
    parser.add_argument("--trl-pg-python", default=PerfConfig.trl_pg_python, help="virtualenv with the current TRL")
    parser.add_argument("--policy-shape", choices=list(POLICY_SHAPES), default="tiny",
                        help="policy size: tiny (CPU figures) or 0.5b (a Qwen2-0.5B-class shape, for GPUs)")
    parser.add_argument("--profile", action="store_true",
                        help="run our PPO/GRPO/RLOO workers under torch.profiler and store their top operators in the "
                             "record (the profiler slows them: use it for a diagnosis, not for the committed ratios)")
    parser.add_argument("--git-commit", default=None,
                        help="the code's commit, for a copy of the tree without .git (a lent GPU machine); "
                             "default: read from the checkout")
    parser.add_argument("--rounds", type=int, default=PerfConfig.rounds,
                        help="PPO/GRPO/RLOO: ours and the peer's run alternately this many times; the median run counts "
                             "(1 on a briefly lent GPU, where each run is long)")
    parser.add_argument("--only", choices=PARTS, action="append",
                        help="re-measure only this part (repeatable); keep the file's other entries")
    parser.add_argument("--worker", choices=["ppo", "grpo", "rloo"], help=argparse.SUPPRESS)
    parser.add_argument("--policy", help=argparse.SUPPRESS)
    parser.add_argument("--rm", help=argparse.SUPPRESS)
    parser.add_argument("--config-json", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker == "ppo":
        print(json.dumps(ppo_worker(args.policy, args.rm, PerfConfig(**json.loads(args.config_json)))))
        return 0
    if args.worker:
        print(json.dumps(pg_worker(args.worker, args.policy, PerfConfig(**json.loads(args.config_json)))))
        return 0

    paths = {"trl_python": args.trl_python, "trl_pg_python": args.trl_pg_python, "policy_shape": args.policy_shape,
             "profile": args.profile, "rounds": args.rounds}
    config = PerfConfig(**paths)
    if args.quick:
        config = PerfConfig(batch_sizes=[16], new_tokens=[8], repeats=2, ppo_batch_size=16, ppo_mini_batch_size=8,
                            ppo_epochs=1, ppo_iterations=3, pg_num_prompts=4, pg_steps=3, memory_vocab=4096,
                            memory_new_tokens=32, memory_sampler_batch=8, memory_sampler_new_tokens=8,
                            **{**paths, "rounds": 1})
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    out = Path(args.out or f"benchmarks/results/perf_{device.type}.json")
    parts = tuple(args.only or PARTS)
    if args.only and out.is_file():
        record = json.loads(out.read_text())
    else:
        record = {"benchmark": "perf", "hardware": hardware(device)}
    record.update({"config": asdict(config), "versions": versions(), "git_commit": args.git_commit or git_commit()})
    runs = record.setdefault("runs", {})
    with tempfile.TemporaryDirectory() as tmp:
        policy, rm, prompts = build_models(Path(tmp), config.policy_shape)
        shape, vocab = POLICY_SHAPES[config.policy_shape]
        record["model"] = {"policy": f"{shape.family} {shape.n_layer} layers x {shape.n_embd} (random init, char "
                                     f"tokenizer, arithmetic{f', vocabulary padded to {vocab}' if vocab else ''})",
                           "parameters": sum(p.numel() for p in load_causal_lm(policy)[0].parameters()),
                           "reward_model": "GPT-2 1 layer x 64 sequence classifier (random init)"}
        torch.set_num_threads(config.threads)  # after building: a 0.5B-class random init is slow on one thread
        for part in parts:
            load_at_start = os.getloadavg()
            record.update(MEASURE[part](policy, rm, prompts, config, device))
            # when, where and under what load each part was measured (parts may come from different runs)
            runs[part] = {"git_commit": record["git_commit"], "load_average_at_start": load_at_start,
                          "load_average_at_end": os.getloadavg(), "device": str(device)}
            record["ratios"] = ratios_of(record)
            record["not_measured"] = not_measured(record, device)
            write_record(out, record)  # after every part: a run cut short keeps the parts it finished
    print(json.dumps({"ratios": record["ratios"], "load": {p: runs[p] for p in parts}}, indent=1))
    return 0


def write_record(out: Path, record: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_suffix(".tmp")
    tmp_out.write_text(json.dumps(record, indent=1))
    os.replace(tmp_out, out)


if __name__ == "__main__":
    sys.exit(main())
