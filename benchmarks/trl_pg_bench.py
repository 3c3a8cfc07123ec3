"""The current TRL's ``GRPOTrainer`` / ``RLOOTrainer`` on the same tiny model and batch layout as ``benchmarks.perf``.

Why a separate script: TRL is a benchmark-only extra that must never be imported by llm_gym or
the agents, so ``benchmarks.perf`` runs this file with the Python of a separate virtualenv
(``/tmp/trl16venv`` with ``pip install torch==2.13.0 'trl>=1.16'``) and reads one JSON line from
stdout: ``{"samples_per_s", "step_s", "peak_rss_mb", "versions"}`` or ``{"error"}``. llm_gym is
not importable there, so the reward is the arithmetic task's exact-match check re-done in a few
lines on the prompt text ("a+b=") — as cheap as the verifier our side uses.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile

from trl_timing import left_padded_tokenizer, report, timed_train  # run by path: benchmarks/ is sys.path[0]


def exact_sum(prompts: list[str], completions: list[str], **_) -> list[float]:
    """1.0 when the completion is the sum asked for by the prompt "a+b=", else 0.0."""
    def answer(prompt: str) -> str:
        a, b = prompt.rstrip("=").split("+")
        return str(int(a) + int(b))
    return [float(c.strip() == answer(p)) for p, c in zip(prompts, completions)]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--algo", choices=["grpo", "rloo"], required=True)
    parser.add_argument("--policy", required=True)
    parser.add_argument("--prompts", required=True, help="JSON list of prompt strings")
    parser.add_argument("--num-prompts", type=int, default=16)
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5, help="rollout batches, one optimizer step each")
    parser.add_argument("--completion-length", type=int, default=8)
    parser.add_argument("--kl-coef", type=float, default=0.05)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    return report(lambda: measure(args))


def measure(args: argparse.Namespace) -> dict:
    import datasets
    import torch
    from transformers import AutoModelForCausalLM
    from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

    tok = left_padded_tokenizer(args.policy, args.threads)
    data = datasets.Dataset.from_dict({"prompt": json.load(open(args.prompts))})
    Config, Trainer = (GRPOConfig, GRPOTrainer) if args.algo == "grpo" else (RLOOConfig, RLOOTrainer)
    batch = args.num_prompts * args.group_size
    with tempfile.TemporaryDirectory() as out:
        config = Config(
            output_dir=out, per_device_train_batch_size=batch, gradient_accumulation_steps=1,  # one step per rollout
            num_generations=args.group_size, num_iterations=1, max_steps=args.steps,
            max_completion_length=args.completion_length, temperature=1.0, top_k=0, beta=args.kl_coef,
            learning_rate=1e-4, max_grad_norm=1.0, report_to="none", save_strategy="no", logging_steps=1,
            use_cpu=not torch.cuda.is_available(), bf16=torch.cuda.is_available(), seed=0,
            dataloader_num_workers=0,
        )
        trainer = Trainer(model=AutoModelForCausalLM.from_pretrained(args.policy), reward_funcs=exact_sum,
                          args=config, train_dataset=data, processing_class=tok)
        return timed_train(trainer, batch, "step")


if __name__ == "__main__":
    sys.exit(main())
