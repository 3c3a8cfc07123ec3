"""Reward specs: strings usable in ``gymnasium.make(..., reward="...")`` and third-party plug-ins.

Grammar: ``name``, ``name:key=value,key=value``, or a weighted sum of those joined by `` + ``
with spaces (``"0.7*exact_match + 0.3*length:max_chars=8"``), so a value may itself hold ``+``. Values are parsed as int, float or bool when
they look like one. Installed packages add reward models through the ``llm_gym.rewards``
entry-point group: the entry point's name is the spec name, its object a factory returning a
``RewardModel`` (or a plain ``(prompts, completions, metadata)`` function).
"""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import Any, Union

from llm_gym.rewards.base import FunctionReward, RewardModel
from llm_gym.rewards.code_tests import CodeTests
from llm_gym.rewards.columns import TRLStyleReward, is_trl_style
from llm_gym.rewards.composite import CompositeReward
from llm_gym.rewards.dialogue import Conciseness, FactCoverage, Fluency, Informativeness, Relevance
from llm_gym.rewards.learned import LearnedReward
from llm_gym.rewards.rules import ExactMatch, FormatCheck, HasVerifier, LengthCheck, NumericMatch, Verifier
from llm_gym.rewards.text_metrics import Bleu, ChrF, Rouge

RewardSpec = Union[str, RewardModel, Callable[..., Any], Mapping[str, Any], None]
ENTRY_POINT_GROUP = "llm_gym.rewards"

REWARDS: dict[str, Callable[..., Any]] = {
    "exact_match": ExactMatch,
    "numeric_match": NumericMatch,
    "verifier": Verifier,
    "length": LengthCheck,
    "format": FormatCheck,
    "bleu": Bleu,
    "chrf": ChrF,
    "rouge": Rouge,
    "learned": LearnedReward,
    "informativeness": Informativeness,
    "relevance": Relevance,
    "fluency": Fluency,
    "fact_coverage": FactCoverage,
    "conciseness": Conciseness,
    "code_tests": CodeTests,
}
_plugins_loaded = False


def register_reward(name: str, factory: Callable[..., Any] | None = None):
    """Register a reward factory under ``name``; usable as ``@register_reward("name")``."""

    def add(fn: Callable[..., Any]) -> Callable[..., Any]:
        REWARDS[name] = fn
        return fn

    return add(factory) if factory is not None else add


def _load_plugins() -> None:
    global _plugins_loaded
    if not _plugins_loaded:
        _plugins_loaded = True
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            REWARDS.setdefault(ep.name, ep.load())


def _parse_value(text: str) -> Any:
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _accepted(factory: Callable[..., Any]) -> list[str]:
    return [name for name in inspect.signature(factory).parameters if name != "task"]


def _make_one(spec: str, task: HasVerifier | None) -> RewardModel:
    name, _, arg_text = spec.strip().partition(":")
    name = name.strip()
    if name not in REWARDS:
        _load_plugins()
    if name not in REWARDS:
        raise ValueError(f"unknown reward spec {name!r} (in {spec!r}); known: {', '.join(sorted(REWARDS))}")
    factory = REWARDS[name]
    accepted = f"{name!r} accepts: {', '.join(_accepted(factory)) or 'no arguments'}"
    kwargs = {}
    for item in filter(None, (part.strip() for part in arg_text.split(","))):
        key, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"reward spec {spec!r}: option {item!r} is not key=value; {accepted}")
        kwargs[key.strip()] = _parse_value(value.strip())
    if "task" in inspect.signature(factory).parameters:
        if task is None:
            raise ValueError(f"reward spec {spec!r}: {name!r} needs a task (it uses the task's verifier)")
        kwargs["task"] = task
    parameters = inspect.signature(factory).parameters
    if not any(p.kind == p.VAR_KEYWORD for p in parameters.values()):
        unknown = [key for key in kwargs if key not in parameters]
        if unknown:
            raise TypeError(f"reward spec {spec!r}: unknown argument {', '.join(map(repr, unknown))}; {accepted}")
    try:
        inspect.signature(factory).bind(**kwargs)
    except TypeError as error:
        raise TypeError(f"reward spec {spec!r}: {error}; {accepted}") from None
    model = factory(**kwargs)
    return model if isinstance(model, RewardModel) else function_reward(model, name=name)


def function_reward(fn: Callable[..., Any], name: str | None = None) -> RewardModel:
    """A plain function as a reward: TRL's ``f(prompts, completions, **columns)`` or llm_gym's
    ``f(prompts, completions, metadata)``, told apart by the signature."""
    return TRLStyleReward(fn, name=name) if is_trl_style(fn) else FunctionReward(fn, name=name)


def make_reward(spec: RewardSpec, task: HasVerifier | None = None) -> RewardModel | None:
    """Build a reward model from a spec string, a mapping ``{name: weight}``, a callable or a model."""
    if spec is None or isinstance(spec, RewardModel):
        return spec
    if isinstance(spec, Mapping):
        return CompositeReward({name: (float(w), _make_one(name, task)) for name, w in spec.items()})
    if callable(spec):
        return function_reward(spec)
    if not isinstance(spec, str) or not spec.strip():
        raise TypeError(f"reward spec must be a non-empty string, mapping, callable or RewardModel; got {spec!r}")
    terms = [term.strip() for term in re.split(r"\s\+\s", spec)]
    if len(terms) == 1 and not re.match(r"^[\d.]+\s*\*", terms[0]):  # "0.5*x" and "0.5 * x" are weighted
        return _make_one(terms[0], task)
    built: list[tuple[str, float, RewardModel]] = []
    for term in terms:
        weight_text, star, body = term.partition("*")
        try:
            weight, body = (float(weight_text), body.strip()) if star else (1.0, term)
        except ValueError:
            raise ValueError(f"reward spec {spec!r}: weight {weight_text!r} of term {term!r} is not a number") from None
        built.append((body, weight, _make_one(body, task)))
    return CompositeReward(_component_keys(spec, built))


def _component_keys(
    spec: str, built: list[tuple[str, float, RewardModel]]
) -> dict[str, tuple[float, RewardModel]]:
    """Key each term by its model's name, or by its spec text where two terms share a name, so every
    term is counted and reported (``length:max_chars=5`` and ``length:max_chars=10``)."""
    names = [model.name for _, _, model in built]
    components: dict[str, tuple[float, RewardModel]] = {}
    for body, weight, model in built:
        key = model.name if names.count(model.name) == 1 else body
        if key in components:
            raise ValueError(f"reward spec {spec!r}: term {body!r} appears twice; add the weights into one term")
        components[key] = (weight, model)
    return components


def available_rewards() -> list[str]:
    """Names of every reward spec, plug-ins included."""
    _load_plugins()
    return sorted(REWARDS)
