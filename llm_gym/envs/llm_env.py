"""Single-episode Gymnasium env at token or sequence granularity."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from llm_gym.envs.engine import EpisodeEngine
from llm_gym.envs.problem import TextGenProblem
from llm_gym.envs.spaces import Granularity, action_space, actions_to_tokens, observation_space


class LLMEnv(gym.Env):
    """Text generation as an MDP: the policy writes the completion, a reward model judges it.

    ``granularity="token"``: one step appends one token (``Discrete(V)``); reward arrives when the
    turn ends (EOS: terminated, ``max_new_tokens``: truncated), or every step if the reward model is
    dense (the per-step difference of its scores of the growing completion).
    ``granularity="sequence"``: one step is a whole completion (``MultiDiscrete([V] * T)`` ids, or a
    string), for GRPO/RLOO/best-of-n and agents that call an LLM; the step ends the turn
    (terminated, with ``info["eos"]`` False when the completion had no EOS).
    Observations are ``{"input_ids", "attention_mask"}`` int64 arrays of length
    ``max_prompt_tokens + max_new_tokens``. When a turn ends, ``info`` holds ``prompt``,
    ``completion``, ``reward_components`` and ``gold_reward``. Other keyword arguments go to
    ``TextGenProblem`` (task, tokenizer, reward, gold_reward, window sizes, split).
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(self, granularity: Granularity = "token", render_mode: str | None = None, **problem_kwargs: Any):
        self.problem = TextGenProblem(**problem_kwargs)
        self.granularity = granularity
        self.observation_space = observation_space(self.problem)
        self.action_space = action_space(self.problem, granularity)
        self.render_mode = render_mode  # an unsupported mode is accepted, as by Gymnasium's own envs
        self.engine = EpisodeEngine(self.problem, num_envs=1, truncate_at_length=granularity == "token")
        self._active = torch.ones(1, dtype=torch.bool)
        self._finished = True

    def _obs(self) -> dict[str, np.ndarray]:
        return {key: value[0].numpy() for key, value in self.engine.observation().items()}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.engine.rngs[0] = self.np_random
        info = self.engine.reset([0])[0]
        self._finished = False
        return self._obs(), info

    def step(self, action: Any):
        if self._finished:
            raise RuntimeError("step() called on a finished episode; call reset() first")
        batch = [action] if isinstance(action, str) and self.granularity == "sequence" else action
        tokens = actions_to_tokens(self.problem, self.granularity, batch, 1, self.engine.device, single=True)
        outcome = self.engine.append(tokens, self._active)
        terminated, truncated = bool(outcome.terminated[0]), bool(outcome.truncated[0])
        self._finished = terminated or truncated
        return self._obs(), float(outcome.reward[0]), terminated, truncated, outcome.infos.get(0, {})

    def render(self) -> str | None:
        """The prompt and the completion so far as text (``render_mode="ansi"``); other modes warn.

        ``gymnasium.make(id, render_mode=m)`` warns for a mode outside ``metadata["render_modes"]``
        and makes the env anyway (SB3's ``make_vec_env`` asks for ``"rgb_array"``); text has no
        image, so ``render()`` then warns and returns None, as Gymnasium's envs do without a mode.
        """
        if self.render_mode != "ansi":
            gym.logger.warn(
                f"LLMEnv renders only render_mode='ansi' (text); render_mode={self.render_mode!r} renders nothing"
            )
            return None
        completion_ids = self.engine.completion_ids(torch.zeros(1, dtype=torch.long))[0]
        return self.engine.prompt_texts[0] + self.problem.tokenizer.decode(completion_ids)
