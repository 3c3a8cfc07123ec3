"""TRL's PPO (``trl.experimental.ppo``, TRL 1.12) on the same tiny model and batch layout as ``benchmarks.perf``.

Why a separate script: TRL is a benchmark-only extra that must never be imported by llm_gym or
the agents, so ``benchmarks.perf`` runs this file with the Python of a separate virtualenv
(``/tmp/trlvenv`` with ``pip install -c constraints.txt '.[bench-trl]'``) and reads one JSON line
from stdout: ``{"samples_per_s", "iteration_s", "peak_rss_mb", "versions"}`` or ``{"error"}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile

from trl_timing import left_padded_tokenizer, report, timed_train  # run by path: benchmarks/ is sys.path[0]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--policy", required=True)
    parser.add_argument("--reward-model", required=True)
    parser.add_argument("--prompts", required=True, help="JSON list of prompt strings")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--mini-batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--response-length", type=int, default=8)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    return report(lambda: measure(args))


def measure(args: argparse.Namespace) -> dict:
    import datasets
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    tok = left_padded_tokenizer(args.policy, args.threads)
    prompts = json.load(open(args.prompts))
    data = datasets.Dataset.from_dict({"input_ids": [tok(p)["input_ids"] for p in prompts]})
    with tempfile.TemporaryDirectory() as out:
        config = PPOConfig(
            output_dir=out, per_device_train_batch_size=args.batch_size, gradient_accumulation_steps=1,  # = one rollout batch
            num_mini_batches=args.batch_size // args.mini_batch_size, num_ppo_epochs=args.epochs,
            total_episodes=args.batch_size * args.iterations, response_length=args.response_length,
            stop_token="eos", temperature=1.0, learning_rate=1e-4, kl_coef=0.05, missing_eos_penalty=1.0,
            local_rollout_forward_batch_size=args.batch_size, num_sample_generations=0, report_to="none",
            save_strategy="no", use_cpu=not torch.cuda.is_available(), bf16=torch.cuda.is_available(),
            logging_steps=1, seed=0,
        )
        trainer = PPOTrainer(
            args=config, processing_class=tok,
            model=AutoModelForCausalLM.from_pretrained(args.policy),
            ref_model=AutoModelForCausalLM.from_pretrained(args.policy),
            reward_model=AutoModelForSequenceClassification.from_pretrained(args.reward_model, num_labels=1),
            value_model=AutoModelForSequenceClassification.from_pretrained(args.policy, num_labels=1),
            train_dataset=data,
        )
        return timed_train(trainer, args.batch_size, "iteration")


if __name__ == "__main__":
    sys.exit(main())
