"""Train TRL 1.12's PPO (``trl.experimental.ppo``) on given prompt ids with a learned reward model; save the policy.

Why a separate script: TRL is a benchmark-only extra that llm_gym and the agents never import, so
``benchmarks.trl_ppo_learner`` runs this file by path with the Python of a separate virtualenv
(``/tmp/trlvenv``, ``pip install -c constraints.txt '.[bench-trl]'``). It reads one JSON file of
settings (``prompt_ids`` and ``PPOConfig`` fields), trains, saves the policy and tokenizer to
``output_dir`` (a Hugging Face directory our evaluator loads), and prints one JSON line:
``{"curve": [...], "train_s"}`` or ``{"error", "traceback"}``.
"""

from __future__ import annotations

import json
import sys
import time
import traceback


def main(settings_path: str) -> int:
    try:
        import datasets
        import torch
        from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
        from trl.experimental.ppo import PPOConfig, PPOTrainer

        settings = json.load(open(settings_path))
        torch.set_num_threads(settings.pop("threads"))
        policy, reward_model = settings.pop("policy"), settings.pop("reward_model")
        data = datasets.Dataset.from_dict({"input_ids": settings.pop("prompt_ids")})
        tok = AutoTokenizer.from_pretrained(policy)
        tok.padding_side = "left"
        config = PPOConfig(**settings)
        trainer = PPOTrainer(
            args=config, processing_class=tok,
            model=AutoModelForCausalLM.from_pretrained(policy),
            ref_model=AutoModelForCausalLM.from_pretrained(policy),
            reward_model=AutoModelForSequenceClassification.from_pretrained(reward_model, num_labels=1),
            value_model=AutoModelForSequenceClassification.from_pretrained(policy, num_labels=1),  # critic from the start model, as ours
            train_dataset=data,
        )
        start = time.perf_counter()
        trainer.train()
        train_s = time.perf_counter() - start
        trainer.save_model(config.output_dir)
        tok.save_pretrained(config.output_dir)
        curve = [{k: v for k, v in row.items() if isinstance(v, (int, float))}
                 for row in trainer.state.log_history if "episode" in row]
        result = {"curve": curve, "train_s": train_s}
    except Exception as err:  # reported to the learner, which raises it with the traceback
        result = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()[-3000:]}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
