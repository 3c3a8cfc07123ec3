"""N episodes stepped together as torch tensors on one device (a native ``gymnasium.vector.VectorEnv``)."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from gymnasium.error import ResetNeeded
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from llm_gym.envs.engine import EpisodeEngine
from llm_gym.envs.problem import TextGenProblem, positive_int
from llm_gym.envs.spaces import Granularity, action_space, actions_to_tokens, observation_space

ArrayType = Literal["torch", "numpy"]


class LLMVectorEnv(VectorEnv):
    """The batched view of ``LLMEnv``: same engine, so the same episodes, but one call steps all N.

    Observations, rewards and done flags are torch tensors on ``device`` (``array_type="numpy"``
    returns numpy arrays instead, for SB3/CleanRL code and Gymnasium's numpy vector wrappers).
    Infos follow Gymnasium's vector layout (``info[key]`` plus a ``info["_key"]`` mask, filled only
    for the slots whose turn ended) and hold numeric numpy arrays only, so every Gymnasium vector
    wrapper, ``ArrayConversion`` included, accepts them: ``gold_reward``, ``eos``, ``turn``,
    ``reward_components`` (a dict of arrays), ``completion_ids`` (``(N, max_new_tokens)``, padded
    with the pad id) and ``completion_length``. Text is not an array, so it lives on the env:
    ``prompts`` (each slot's current prompt, what the observation shows) and ``turn_prompts`` /
    ``turn_completions`` (each slot's most recently ended turn). Slot ``i`` reset with ``seed=s``
    replays ``LLMEnv`` reset with ``seed=s + i``. Rewards of all slots that finish in a step are
    scored in one batch.

    Autoreset (``metadata["autoreset_mode"]``):
    - ``NEXT_STEP`` (default, as Gymnasium's own vector envs): the step after a slot ends resets it,
      ignores its action and returns the new prompt with reward 0 and both flags False;
    - ``SAME_STEP``: the ending step already returns the new prompt; the last observation and info
      of the ended episode are in ``info["final_obs"]`` and ``info["final_info"]``. ``final_obs`` is a
      dict of ``(N, L)`` numpy arrays, rows valid where ``info["_final_obs"]``, not Gymnasium's
      object array of per-env observations: an object array would stop ``ArrayConversion`` (it
      converts every info array). ``DictInfoToList`` gives each env's own dict.
    """

    def __init__(
        self,
        num_envs: int = 8,
        granularity: Granularity = "token",
        device: str | torch.device = "cpu",
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        array_type: ArrayType = "torch",
        **problem_kwargs: Any,
    ):
        num_envs = positive_int("num_envs", num_envs)
        if array_type not in ("torch", "numpy"):
            raise ValueError(f"array_type must be 'torch' or 'numpy', got {array_type!r}")
        self.array_type = array_type
        self.problem = TextGenProblem(**problem_kwargs)
        self.num_envs, self.granularity = num_envs, granularity
        self.engine = EpisodeEngine(self.problem, num_envs, device, truncate_at_length=granularity == "token")
        self.device = self.engine.device
        if isinstance(autoreset_mode, str) and autoreset_mode.upper() in AutoresetMode.__members__:
            autoreset_mode = AutoresetMode[autoreset_mode.upper()]  # also accept "next_step" / "same_step"
        self.autoreset_mode = AutoresetMode(autoreset_mode)
        if self.autoreset_mode == AutoresetMode.DISABLED:
            raise ValueError("autoreset_mode DISABLED is not supported; use NEXT_STEP or SAME_STEP")
        self.metadata = {"autoreset_mode": self.autoreset_mode}
        self.single_observation_space = observation_space(self.problem)
        self.single_action_space = action_space(self.problem, granularity)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._needs_reset = torch.zeros(num_envs, dtype=torch.bool, device=self.device)
        self._never_reset = set(range(num_envs))
        self.turn_prompts: list[str] = [""] * num_envs
        self.turn_completions: list[str] = [""] * num_envs

    @property
    def prompts(self) -> list[str]:
        """Each slot's current prompt text (the context its observation shows)."""
        return list(self.engine.prompt_texts)

    def _out(self, *arrays: Any) -> Any:
        """Torch tensors as they are, or as numpy arrays for ``array_type="numpy"``."""
        if self.array_type == "torch":
            return arrays if len(arrays) > 1 else arrays[0]
        converted = tuple(
            {k: v.cpu().numpy() for k, v in a.items()} if isinstance(a, dict) else a.cpu().numpy() for a in arrays
        )
        return converted if len(converted) > 1 else converted[0]

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None):
        """Reset every slot, or only ``options["reset_mask"]``; ``seed=s`` seeds slot i with ``s + i``."""
        if seed is None:
            seeds = [None] * self.num_envs
        elif isinstance(seed, int):
            seeds = [seed + i for i in range(self.num_envs)]
        else:
            if len(seed) != self.num_envs:
                raise ValueError(f"got {len(seed)} seeds for {self.num_envs} envs")
            seeds = list(seed)
        super().reset(seed=seed if isinstance(seed, int) else None)  # np_random_seed, as Gymnasium's vector envs
        mask = (options or {}).get("reset_mask")
        indices = list(range(self.num_envs)) if mask is None else self._reset_indices(mask)
        for i in indices:
            if seeds[i] is not None or self.engine.rngs[i] is None:
                self.engine.seed(i, seeds[i])
        infos = self._engine_infos(indices, self.engine.reset(indices))
        self._needs_reset[indices] = False
        self._never_reset.difference_update(indices)
        return self._out(self.engine.observation()), infos

    def _reset_indices(self, mask: Any) -> list[int]:
        """The slots ``options["reset_mask"]`` names, checked as Gymnasium's vector envs check it."""
        array = mask.cpu().numpy() if torch.is_tensor(mask) else mask
        if not isinstance(array, np.ndarray) or array.dtype != np.bool_ or array.shape != (self.num_envs,):
            shape = getattr(array, "shape", None)
            raise ValueError(f"options['reset_mask'] must be a bool array (numpy or torch) of shape ({self.num_envs},), "
                             f"got {type(mask).__name__} of dtype {getattr(array, 'dtype', None)} and shape {shape}")
        if not array.any():
            raise ValueError("options['reset_mask'] must have at least one True value")
        return np.flatnonzero(array).tolist()

    def step(self, actions: Any):
        if self._never_reset:
            raise ResetNeeded(f"step() before reset(): slot(s) {sorted(self._never_reset)} have no episode yet; "
                              "call reset() first")
        tokens = actions_to_tokens(self.problem, self.granularity, actions, self.num_envs, self.device)
        infos: dict[str, Any] = {}
        if self.autoreset_mode == AutoresetMode.NEXT_STEP:
            self.engine.check_actions(tokens, ~self._needs_reset)  # before the pending resets: a bad action changes nothing
            resetting = self._needs_reset.nonzero().flatten().tolist()
            if resetting:
                infos = self._engine_infos(resetting, self.engine.reset(resetting), infos)
            outcome = self.engine.append(tokens, ~self._needs_reset)
            self._needs_reset = outcome.terminated | outcome.truncated
            infos = self._engine_infos(list(outcome.infos), list(outcome.infos.values()), infos)
            return self._out(self.engine.observation(), outcome.reward, outcome.terminated, outcome.truncated) + (infos,)

        outcome = self.engine.append(tokens, torch.ones_like(self._needs_reset))
        ended = (outcome.terminated | outcome.truncated).nonzero().flatten().tolist()
        continuing = [i for i in outcome.infos if i not in ended]  # multi-turn slots still running
        infos = self._engine_infos(continuing, [outcome.infos[i] for i in continuing], infos)
        if ended:
            infos["final_obs"] = {k: v.cpu().numpy() for k, v in self.engine.observation().items()}
            infos["_final_obs"] = (outcome.terminated | outcome.truncated).cpu().numpy()
            finals = [{"final_info": self._array_info(i, outcome.infos[i])} for i in ended]
            infos = self._batch_infos(ended, finals, infos)
            infos = self._engine_infos(ended, self.engine.reset(ended), infos)
        return self._out(self.engine.observation(), outcome.reward, outcome.terminated, outcome.truncated) + (infos,)

    def _array_info(self, i: int, info: dict[str, Any]) -> dict[str, Any]:
        """One slot's engine info as numbers and fixed-shape arrays; its texts go to ``turn_*``."""
        info = dict(info)
        prompt = info.pop("prompt")
        if "completion" in info:  # a turn ended (else a reset, whose prompt is ``self.prompts[i]``)
            self.turn_prompts[i], self.turn_completions[i] = prompt, info.pop("completion")
        if "completion_ids" in info:
            ids = info.pop("completion_ids")
            row = np.full(self.problem.max_new_tokens, self.problem.pad_token_id, dtype=np.int64)
            row[: len(ids)] = ids
            info["completion_ids"], info["completion_length"] = row, len(ids)
        return info

    def _engine_infos(self, indices: list[int], infos: list[dict[str, Any]], into: dict | None = None) -> dict:
        return self._batch_infos(indices, [self._array_info(i, info) for i, info in zip(indices, infos)], into)

    def _batch_infos(self, indices: list[int], infos: list[dict[str, Any]], into: dict | None = None) -> dict:
        """Gymnasium's vector-info layout (``info[key]`` + ``info["_key"]`` mask), one numeric array per key.

        Same result as calling ``_add_info`` per slot, without reallocating every mask per slot.
        """
        into = {} if into is None else into
        for key in dict.fromkeys(k for info in infos for k in info):
            rows = [(i, info[key]) for i, info in zip(indices, infos) if key in info]
            slots = [i for i, _ in rows]
            first = rows[0][1]
            if isinstance(first, dict):
                into[key] = self._batch_infos(slots, [value for _, value in rows], into.get(key))
            else:
                if key not in into:
                    first = np.asarray(first)
                    into[key] = np.zeros((self.num_envs, *first.shape), dtype=first.dtype)
                for i, value in rows:
                    into[key][i] = value
            mask = into.setdefault(f"_{key}", np.zeros(self.num_envs, dtype=np.bool_))
            mask[slots] = True
        return into
