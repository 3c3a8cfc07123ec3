"""TRL 1.12's PPO as a benchmark-runner algorithm, so it is run, recorded and evaluated like ours.

Why: "is our PPO as good as TRL's?" is only answered when both see the same prompts distribution,
reward, batch layout and number of samples, and are judged by the same evaluator. ``train`` draws
``budget`` prompts from the env's train split with the env seeds our learners use,
hands them to ``benchmarks/trl_ppo_train.py`` running in TRL's own virtualenv with our settings
mapped to TRL's ``PPOConfig`` names, and ``evaluate`` is our ``agents.rl.evaluation.evaluate``
with the start model as the KL reference. The reward is the env's learned reward model (TRL's PPO
takes a sequence-classification model, not a function), so this learner only runs on the
learned-RM track.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import gymnasium

from agents import metrics as M
from agents.rl.algorithm import TrainResult
from agents.rl.evaluation import evaluate
from agents.rl.rollout import iteration_seeds
from llm_gym.models import load_tokenizer
from llm_gym.tokenization import encode_prompts

SCRIPT = Path(__file__).with_name("trl_ppo_train.py")
LEARNED_PREFIX = "learned:path="
TRL_METRICS = {"objective/scores": M.REWARD, "objective/kl": M.KL, "policy/entropy_avg": M.ENTROPY,
               "policy/clipfrac_avg": M.CLIPFRAC, "policy/approxkl_avg": M.APPROX_KL}


class TRLPPO:
    """``trl.experimental.ppo.PPOTrainer`` with our PPO's settings (see the module docstring).

    Settings without a TRL twin are pinned to ours: constant learning rate, AdamW eps 1e-5, the
    critic initialised from the start model. TRL's critic is always a separate model (ours is a
    value head on the policy by default). TRL's reward model sees the response's EOS, ours does not;
    unless ``reward_model_sees_eos``, the EOS is hidden from it (``trl_ppo_train.score_before_eos``), so
    both optimise the same proxy."""

    name = "trl-ppo"

    def __init__(self, model_name_or_path: str, python: str, batch_size: int = 64, num_mini_batches: int = 4,
                 num_ppo_epochs: int = 4, learning_rate: float = 3e-4, kl_coef: float = 0.05,
                 kl_estimator: str = "k1", whiten_rewards: bool = False, temperature: float = 1.0,
                 missing_eos_penalty: float = 1.0, eval_episodes: int = 16, threads: int = 1,
                 reward_model_sees_eos: bool = False):
        self.model_name_or_path, self.python, self.threads = model_name_or_path, python, threads
        self.reward_model_sees_eos = reward_model_sees_eos
        self.trl_settings = {
            "per_device_train_batch_size": batch_size, "gradient_accumulation_steps": 1,
            "num_mini_batches": num_mini_batches, "num_ppo_epochs": num_ppo_epochs, "learning_rate": learning_rate,
            "kl_coef": kl_coef, "kl_estimator": kl_estimator, "whiten_rewards": whiten_rewards,
            "temperature": temperature, "missing_eos_penalty": missing_eos_penalty,
            "vf_coef": 0.1, "cliprange": 0.2, "cliprange_value": 0.2, "gamma": 1.0, "lam": 0.95,
            "lr_scheduler_type": "constant", "adam_epsilon": 1e-5, "max_grad_norm": 1.0, "stop_token": "eos",
            "local_rollout_forward_batch_size": batch_size, "num_sample_generations": 0, "report_to": "none",
            "save_strategy": "no", "use_cpu": True, "logging_steps": 1,
        }
        del eval_episodes  # the runner's evaluation is the one reported

    def train(self, env_id: str, budget: int, seed: int, out_dir: Path,
              env_kwargs: dict[str, Any] | None = None) -> TrainResult:
        env_kwargs = dict(env_kwargs or {})
        reward = str(env_kwargs.get("reward", ""))
        if not reward.startswith(LEARNED_PREFIX):
            raise ValueError(f"trl-ppo needs a learned reward model (env_kwargs reward '{LEARNED_PREFIX}DIR'), got {reward!r}")
        env = gymnasium.make(env_id, **{**env_kwargs, "split": "train"})
        batch = self.trl_settings["per_device_train_batch_size"]
        seeds = [s for i in range(-(-budget // batch)) for s in iteration_seeds(seed, i, 0, batch)]  # as our learners draw
        prompts = [env.reset(seed=s)[1]["prompt"] for s in seeds[:budget]]
        max_new_tokens = env.unwrapped.problem.max_new_tokens
        env.close()
        out_dir = Path(out_dir)
        policy_dir = out_dir / "policy"
        settings = {**self.trl_settings, "output_dir": str(policy_dir), "total_episodes": budget, "seed": seed,
                    "response_length": max_new_tokens, "threads": self.threads, "policy": self.model_name_or_path,
                    "reward_model": reward[len(LEARNED_PREFIX):], "reward_model_sees_eos": self.reward_model_sees_eos,
                    "prompt_ids": encode_prompts(load_tokenizer(self.model_name_or_path), prompts)}
        with tempfile.NamedTemporaryFile("w", suffix=".json", dir=out_dir, delete=False) as f:
            json.dump(settings, f)
        done = subprocess.run([self.python, str(SCRIPT), f.name], capture_output=True, text=True, check=False)
        Path(f.name).unlink()
        lines = done.stdout.strip().splitlines()
        result = json.loads(lines[-1]) if lines else {"error": f"no output (exit {done.returncode})",
                                                       "traceback": done.stderr[-3000:]}
        if "error" in result:
            raise RuntimeError(f"TRL PPO failed: {result['error']}\n{result.get('traceback', '')}")
        curve = [{"step": row["episode"], **{ours: row[theirs] for theirs, ours in TRL_METRICS.items() if theirs in row}}
                 for row in result["curve"]]
        return TrainResult(policy_dir, curve)

    def evaluate(self, policy_dir: Path, env_id: str, episodes: int, seed: int,
                 env_kwargs: dict[str, Any] | None = None, rollouts_path: Path | None = None) -> dict[str, float]:
        return evaluate(policy_dir, env_id, episodes, seed, env_kwargs, reference_dir=self.model_name_or_path,
                        rollouts_path=rollouts_path)
