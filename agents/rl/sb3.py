"""stable-baselines3 on the token-level envs: PPO / A2C with a small transformer over the token window.

Why: SB3 is the RL library most people already know; running its on-policy algorithms unchanged on
llm_gym envs shows the envs are plain Gymnasium MDPs (one token per step, reward at the end) and
gives a from-scratch baseline next to the LM-based PPO in ``agents/rl/ppo.py``. SB3 cannot start from
a pretrained causal LM, so the policy here is a small randomly initialised transformer trained
from scratch; it may be slow, it must be correct.

Pieces: ``SB3VecEnv`` steps an ``LLMVectorEnv`` for SB3 (one batched call for all envs, SB3's
autoreset conventions), ``TokenTransformer`` is the features extractor, ``SB3Agent`` implements
``agents.rl.algorithm.Algorithm`` (registered as "sb3-ppo"; ``algo: a2c`` in its config gives A2C).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import gymnasium
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode
from safetensors.torch import load_model, save_model
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy, MultiInputActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.vec_env import VecEnv
from torch import nn

from agents import metrics as M
from agents.rl.algorithm import TrainResult
from agents.rl.evaluation import append_rollouts, distinct_n
from agents.run_config import save_config

POLICY_FILE, REFERENCE_FILE, CONFIG_FILE = "policy.safetensors", "reference.safetensors", "sb3_config.json"


@dataclass
class SB3Config:
    """SB3 hyper-parameters and the policy size; saved as ``config.yaml`` next to the run outputs."""

    algo: Literal["ppo", "a2c"] = field(default="ppo", metadata={"help": "the SB3 algorithm: ppo or a2c"})
    num_envs: int = field(default=16, metadata={"help": "parallel token-level envs"})
    n_steps: int = field(default=16, metadata={"help": "steps per env per rollout (SB3's n_steps)"})
    batch_size: int = field(default=64, metadata={"help": "SB3 minibatch size"})
    n_epochs: int = field(default=4, metadata={"help": "passes over each rollout (PPO)"})
    learning_rate: float = field(default=1e-3, metadata={"help": "Adam learning rate"})
    gamma: float = field(default=1.0, metadata={
        "help": "discount (1: the reward comes once, at the end of a short completion)"})
    gae_lambda: float = field(default=0.95, metadata={"help": "GAE lambda"})
    ent_coef: float = field(default=0.01, metadata={"help": "entropy bonus (SB3's name)"})
    clip_range: float = field(default=0.2, metadata={"help": "PPO ratio clip (SB3's name)"})
    d_model: int = field(default=64, metadata={"help": "width of the from-scratch token transformer"})
    n_layer: int = field(default=1, metadata={"help": "layers of the token transformer"})
    n_head: int = field(default=4, metadata={"help": "attention heads of the token transformer"})
    log_every: int = field(default=256, metadata={"help": "episodes between curve points"})
    eval_episodes: int = field(default=256, metadata={"help": "episodes of the final evaluation"})
    device: str = field(default="cpu", metadata={"help": "torch device"})


class TokenTransformer(BaseFeaturesExtractor):
    """Features of a token window: embeddings + positions -> pre-norm transformer -> last real token.

    SB3 turns Box observations into floats; ids are cast back to long here. The last position whose
    ``attention_mask`` is 1 is the token just written (or the prompt's end), which, as in a causal LM,
    is where the next-token decision is read from.
    """

    def __init__(self, observation_space: spaces.Dict, d_model: int = 64, n_layer: int = 1, n_head: int = 4):
        super().__init__(observation_space, features_dim=d_model)
        ids_space = observation_space["input_ids"]
        self.window = int(ids_space.shape[0])
        self.embed = nn.Embedding(int(ids_space.high.max()) + 1, d_model)
        self.position = nn.Embedding(self.window, d_model)
        layer = nn.TransformerEncoderLayer(
            d_model, n_head, 4 * d_model, dropout=0.0, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, n_layer, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        ids = observations["input_ids"].long()
        mask = observations["attention_mask"].bool()
        mask[:, -1] |= ~mask.any(1)  # an all-padding row (never produced by the env) must not make NaNs
        positions = torch.arange(self.window, device=ids.device)
        hidden = self.encoder(self.embed(ids) + self.position(positions), src_key_padding_mask=~mask)
        last = (mask.long() * positions).argmax(1)
        return self.norm(hidden[torch.arange(len(ids), device=ids.device), last])


class SB3VecEnv(VecEnv):
    """An ``LLMVectorEnv`` (SAME_STEP autoreset) seen through SB3's ``VecEnv`` interface.

    Why not ``DummyVecEnv`` of single envs: the vector env steps all N episodes in one tensor op and
    scores finished ones in one reward batch. Ended episodes report SB3's ``terminal_observation``,
    ``TimeLimit.truncated`` and Monitor-style ``episode`` stats, plus ``gold_reward``, ``completion_ids``
    and the ``prompt`` and ``completion`` texts from the env's turn-end info.
    """

    def __init__(self, env: Any):
        if getattr(env, "autoreset_mode", None) != AutoresetMode.SAME_STEP:
            raise ValueError("SB3VecEnv needs an LLMVectorEnv with autoreset_mode='same_step' (SB3's convention)")
        self.env = env
        super().__init__(env.num_envs, env.single_observation_space, env.single_action_space)
        self._actions: np.ndarray | None = None
        self._returns = np.zeros(self.num_envs)
        self._lengths = np.zeros(self.num_envs, dtype=np.int64)
        self._start = time.time()

    @staticmethod
    def _numpy(obs: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        return {key: value.cpu().numpy() for key, value in obs.items()}

    def reset(self) -> dict[str, np.ndarray]:
        seeds = None if all(s is None for s in self._seeds) else self._seeds
        obs, _ = self.env.reset(seed=seeds)
        self._reset_seeds()
        self._returns[:], self._lengths[:] = 0.0, 0
        return self._numpy(obs)

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self):
        obs, reward, terminated, truncated, info = self.env.step(self._actions)
        reward, terminated, truncated = (x.cpu().numpy() for x in (reward, terminated, truncated))
        self._returns += reward
        self._lengths += 1
        dones = terminated | truncated
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        for i in np.flatnonzero(dones):
            final = info["final_info"]
            infos[i] = {
                "terminal_observation": {key: value[i] for key, value in info["final_obs"].items()},
                "TimeLimit.truncated": bool(truncated[i] and not terminated[i]),
                "episode": {"r": float(self._returns[i]), "l": int(self._lengths[i]), "t": time.time() - self._start},
                "completion_ids": final["completion_ids"][i, : final["completion_length"][i]].tolist(),
                "prompt": self.env.turn_prompts[i],
                "completion": self.env.turn_completions[i],
            }
            if "gold_reward" in final:
                infos[i]["gold_reward"] = float(final["gold_reward"][i])
            self._returns[i], self._lengths[i] = 0.0, 0
        return self._numpy(obs), reward.astype(np.float32), dones, infos

    def close(self) -> None:
        self.env.close()

    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        return [getattr(self.env, attr_name)] * len(self._get_indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        raise AttributeError(f"SB3VecEnv cannot set {attr_name!r} on individual envs of a batched LLMVectorEnv")

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list[Any]:
        raise AttributeError(f"SB3VecEnv cannot call {method_name!r} on individual envs of a batched LLMVectorEnv")

    def env_is_wrapped(self, wrapper_class: type[gymnasium.Wrapper], indices=None) -> list[bool]:
        return [False] * len(self._get_indices(indices))


def make_sb3_vec_env(env_id: str, num_envs: int, env_kwargs: dict[str, Any] | None = None, device: str = "cpu"):
    """A token-level ``SB3VecEnv`` for an ``llm_gym`` env id (via its vector entry point)."""
    kwargs = {**(env_kwargs or {}), "granularity": "token", "autoreset_mode": "same_step"}
    env = gymnasium.make_vec(
        env_id, num_envs=num_envs, vectorization_mode="vector_entry_point", device=device, **kwargs
    )
    return SB3VecEnv(env)


def policy_kwargs(config: SB3Config) -> dict[str, Any]:
    return {
        "features_extractor_class": TokenTransformer,
        "features_extractor_kwargs": {"d_model": config.d_model, "n_layer": config.n_layer, "n_head": config.n_head},
        "net_arch": {"pi": [config.d_model], "vf": [config.d_model]},
    }


def build_model(config: SB3Config, venv: VecEnv, seed: int, tensorboard_log: str | None = None) -> OnPolicyAlgorithm:
    common = {
        "learning_rate": config.learning_rate,
        "n_steps": config.n_steps,
        "gamma": config.gamma,
        "gae_lambda": config.gae_lambda,
        "ent_coef": config.ent_coef,
        "policy_kwargs": policy_kwargs(config),
        "seed": seed,
        "device": config.device,
        "tensorboard_log": tensorboard_log,
        "verbose": 0,
    }
    if config.algo == "ppo":
        return PPO(
            "MultiInputPolicy", venv, batch_size=config.batch_size, n_epochs=config.n_epochs,
            clip_range=config.clip_range, **common,
        )
    if config.algo == "a2c":
        return A2C("MultiInputPolicy", venv, **common)
    raise ValueError(f"unknown SB3 algorithm {config.algo!r}; use 'ppo' or 'a2c'")


def _save_weights(policy: ActorCriticPolicy, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    save_model(policy, str(tmp))  # handles the extractor shared by the actor and critic
    os.replace(tmp, path)  # atomic: a crash never leaves a half-written policy


class EpisodeLog(BaseCallback):
    """Collects finished episodes into curve points and stops training once ``budget`` episodes ran."""

    def __init__(self, budget: int, log_every: int, metrics_path: Path):
        super().__init__()
        self.budget, self.log_every, self.metrics_path = budget, log_every, metrics_path
        self.episodes, self.curve, self.window = 0, [], []
        self.started = time.perf_counter()
        self.tokens = 0

    def _on_step(self) -> bool:
        self.tokens += self.training_env.num_envs
        for info in self.locals["infos"]:
            if "episode" in info:
                self.window.append((info["episode"]["r"], info.get("gold_reward", math.nan), info["episode"]["l"]))
        def ready() -> bool:
            return len(self.window) >= self.log_every or self.episodes + len(self.window) >= self.budget

        while self.window and self.episodes < self.budget and ready():
            take = min(self.log_every, self.budget - self.episodes)  # episodes past the budget are dropped
            chunk, self.window = self.window[:take], self.window[take:]
            self.episodes += len(chunk)
            rewards, golds, lengths = (np.array(column, dtype=np.float64) for column in zip(*chunk))
            point = {
                "step": self.episodes,
                M.REWARD: float(rewards.mean()),
                M.GOLD_REWARD: float(np.nanmean(golds)) if not np.isnan(golds).all() else math.nan,
                M.EPISODE_LENGTH: float(lengths.mean()),
                M.TOKENS_PER_S: self.tokens / (time.perf_counter() - self.started),
            }
            self.curve.append(point)
            for key, value in point.items():
                if key != "step":
                    self.logger.record(key, value)
            with self.metrics_path.open("a") as f:
                f.write(json.dumps(point) + "\n")
        return self.episodes < self.budget


class SB3Agent:
    """``agents.rl.algorithm.Algorithm`` for SB3 PPO/A2C on the token-level env (see the module docstring).

    ``train`` writes ``config.yaml``, ``metrics.jsonl``, ``tb/`` and ``policy/`` (weights as
    safetensors, the untrained initial policy beside them as the KL reference: SB3 starts from
    scratch, there is no SFT model). ``budget`` counts episodes; it must cover one rollout
    (``num_envs`` episodes).
    """

    def __init__(self, config: SB3Config | None = None):
        self.config = config or SB3Config()
        self.name = f"sb3-{self.config.algo}"

    def train(
        self, env_id: str, budget: int, seed: int, out_dir: Path, env_kwargs: dict[str, Any] | None = None
    ) -> TrainResult:
        config, out_dir = self.config, Path(out_dir)
        if budget < config.num_envs:
            raise ValueError(
                f"budget of {budget} episodes is smaller than one batch of {config.num_envs} episodes (num_envs)"
            )
        policy_dir = out_dir / "policy"
        policy_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, out_dir)
        venv = make_sb3_vec_env(env_id, config.num_envs, env_kwargs, config.device)
        venv.seed(seed)
        model = build_model(config, venv, seed, tensorboard_log=str(out_dir / "tb"))
        (policy_dir / CONFIG_FILE).write_text(json.dumps({"config": dataclasses.asdict(config), "env_id": env_id}))
        _save_weights(model.policy, policy_dir / REFERENCE_FILE)
        metrics_path = out_dir / "metrics.jsonl"
        metrics_path.unlink(missing_ok=True)
        log = EpisodeLog(budget, min(config.log_every, budget), metrics_path)
        # An episode lasts at most max_new_tokens steps, so this many timesteps always covers the budget;
        # the callback stops the run at ``budget`` episodes.
        model.learn(total_timesteps=(budget + config.num_envs) * venv.env.problem.max_new_tokens, callback=log)
        _save_weights(model.policy, policy_dir / POLICY_FILE)
        venv.close()
        final = self.evaluate(policy_dir, env_id, min(config.eval_episodes, budget), seed + 1, env_kwargs)
        return TrainResult(policy_dir, log.curve, final)

    def load_policy(self, policy_dir: Path, env_id: str, env_kwargs: dict[str, Any] | None, weights: str = POLICY_FILE):
        """The saved policy (or, with ``weights=REFERENCE_FILE``, its untrained start), rebuilt from its saved
        config for the spaces of ``env_id`` (no pickles: weights are safetensors, the config JSON)."""
        saved = json.loads((Path(policy_dir) / CONFIG_FILE).read_text())
        config = SB3Config(**saved["config"])
        venv = make_sb3_vec_env(env_id, 1, env_kwargs, config.device)
        no_schedule = lambda _: 0.0  # noqa: E731  (evaluation only: no optimizer steps)
        policy = MultiInputActorCriticPolicy(
            venv.observation_space, venv.action_space, no_schedule, **policy_kwargs(config)
        )
        venv.close()
        load_model(policy, str(Path(policy_dir) / weights), device=config.device)
        return policy.to(config.device).eval(), config

    @torch.no_grad()
    def evaluate(
        self,
        policy_dir: Path,
        env_id: str,
        episodes: int,
        seed: int,
        env_kwargs: dict[str, Any] | None = None,
        weights: str = POLICY_FILE,
        rollouts_path: Path | None = None,
    ) -> dict[str, float]:
        """Sampled episodes on held-out prompts (``split="test"`` unless ``env_kwargs`` says otherwise),
        appended to ``rollouts_path`` when given (``agents.rl.evaluation.append_rollouts``' format).

        ``objective/kl``: mean over episodes of the summed per-token log-ratio (k1) of the policy to
        its untrained initial weights, on the policy's own samples. ``eval/perplexity``: of the
        policy on the reference completions (+EOS) of the evaluated prompts, by teacher forcing.
        ``weights=REFERENCE_FILE`` evaluates the untrained start instead (the baseline of a run).
        """
        env_kwargs = {"split": "test", **(env_kwargs or {})}
        policy, config = self.load_policy(policy_dir, env_id, env_kwargs, weights)
        reference, _ = self.load_policy(policy_dir, env_id, env_kwargs, REFERENCE_FILE)
        n = min(episodes, 64)
        venv = make_sb3_vec_env(env_id, n, env_kwargs, config.device)
        venv.seed(seed)
        torch.manual_seed(seed)
        obs = venv.reset()
        nll, ref_tokens = self._reference_nll(policy, venv, list(range(n)))
        started, kl_running = n, np.zeros(n)
        rewards, golds, lengths, kls, completions = [], [], [], [], []
        prompts, texts, metadata = [], [], []
        while len(rewards) < episodes:
            samples = list(venv.env.engine.samples)  # before a finished slot is reset to a new prompt
            obs_t, _ = policy.obs_to_tensor(obs)
            dist = policy.get_distribution(obs_t)
            actions = dist.sample()
            kl_running += (dist.log_prob(actions) - reference.get_distribution(obs_t).log_prob(actions)).cpu().numpy()
            obs, _, dones, infos = venv.step(actions.cpu().numpy())
            for i in np.flatnonzero(dones):
                if len(rewards) < episodes:
                    rewards.append(infos[i]["episode"]["r"])
                    golds.append(infos[i].get("gold_reward", math.nan))
                    lengths.append(infos[i]["episode"]["l"])
                    kls.append(kl_running[i])
                    completions.append(list(infos[i]["completion_ids"]))
                    answer = venv.env.problem.task.reference(samples[i], 0)  # as RolloutEnv.metadata has it
                    prompts.append(infos[i]["prompt"])
                    texts.append(infos[i]["completion"])
                    metadata.append({**samples[i].metadata, "reference": answer})
                kl_running[i] = 0.0
            fresh = np.flatnonzero(dones)[: max(episodes - started, 0)].tolist()  # new prompts still to evaluate
            if fresh:
                step_nll, step_tokens = self._reference_nll(policy, venv, fresh)
                nll, ref_tokens, started = nll + step_nll, ref_tokens + step_tokens, started + len(fresh)
        venv.close()
        if rollouts_path is not None:
            append_rollouts(rollouts_path, prompts, texts, metadata, rewards, golds, kls)
        return {
            M.REWARD: float(np.mean(rewards)),
            M.GOLD_REWARD: float(np.nanmean(golds)) if not np.isnan(golds).all() else math.nan,
            M.KL: float(np.mean(kls)),
            M.EVAL_PERPLEXITY: math.exp(nll / max(ref_tokens, 1)),
            M.EVAL_DISTINCT_1: distinct_n(completions, 1),
            M.EVAL_DISTINCT_2: distinct_n(completions, 2),
            M.EPISODE_LENGTH: float(np.mean(lengths)),
        }

    @staticmethod
    def _reference_nll(policy: ActorCriticPolicy, venv: SB3VecEnv, indices: list[int]) -> tuple[float, int]:
        """Teacher forcing: the policy's NLL of the reference (+EOS) of the prompts now in ``indices``."""
        engine, problem = venv.env.engine, venv.env.problem
        texts = [engine.samples[i].reference for i in indices]
        encoded = problem.tokenizer(texts, add_special_tokens=False)["input_ids"]
        references = [(row + [problem.eos_token_id])[: engine.T] for row in encoded]
        ids, masks, targets = [], [], []
        for i, reference in zip(indices, references):
            row, mask = engine.input_ids[i].clone(), engine.attention_mask[i].clone()
            row[engine.P :], mask[engine.P :] = problem.pad_token_id, 0
            for t, token in enumerate(reference):
                ids.append(row.clone())
                masks.append(mask.clone())
                targets.append(token)
                row[engine.P + t], mask[engine.P + t] = token, 1
        obs = {"input_ids": torch.stack(ids).numpy(), "attention_mask": torch.stack(masks).numpy()}
        obs_t, _ = policy.obs_to_tensor(obs)
        logp = policy.get_distribution(obs_t).log_prob(torch.as_tensor(targets, device=policy.device))
        return float(-logp.sum()), len(targets)
