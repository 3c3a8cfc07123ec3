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


def score_before_eos(reward_model, eos_token_id: int) -> None:
    """Make ``reward_model`` score a response ending in EOS as the same response without it.

    TRL's PPO scores prompt + response + EOS (its stop token is kept); our reward models learned, and
    our env scores, prompt + completion without EOS, and the extra token moves their scores (0.107 ->
    0.055 and -0.106 -> 0.532 on two Count samples). Causal attention leaves every earlier hidden state
    unchanged, so giving the EOS position the hidden state before it makes TRL's score ours."""
    import torch

    prefix = reward_model.base_model_prefix
    backbone = getattr(reward_model, prefix)

    class BeforeEOS(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = backbone

        def forward(self, input_ids, **kwargs):
            out = self.backbone(input_ids=input_ids, **kwargs)
            last = out.hidden_states[-1]
            shifted = torch.cat([last[:, :1], last[:, :-1]], dim=1)
            out.hidden_states = (*out.hidden_states[:-1], torch.where((input_ids == eos_token_id)[..., None], shifted, last))
            return out

    setattr(reward_model, prefix, BeforeEOS())


def main(settings_path: str) -> int:
    try:
        import datasets
        import torch
        from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
        from trl.experimental.ppo import PPOConfig, PPOTrainer

        settings = json.load(open(settings_path))
        torch.set_num_threads(settings.pop("threads"))
        policy, reward_path = settings.pop("policy"), settings.pop("reward_model")
        rm_sees_eos = settings.pop("reward_model_sees_eos")
        data = datasets.Dataset.from_dict({"input_ids": settings.pop("prompt_ids")})
        tok = AutoTokenizer.from_pretrained(policy)
        tok.padding_side = "left"
        config = PPOConfig(**settings)
        reward_model = AutoModelForSequenceClassification.from_pretrained(reward_path, num_labels=1)
        if not rm_sees_eos:
            score_before_eos(reward_model, tok.eos_token_id)
        trainer = PPOTrainer(
            args=config, processing_class=tok,
            model=AutoModelForCausalLM.from_pretrained(policy),
            ref_model=AutoModelForCausalLM.from_pretrained(policy),
            reward_model=reward_model,
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
