"""Code generation: spec-style prompts answered with a short Python function, judged by hidden tests.

Procedural tasks describe an integer function as a chain of operations (``f(x): add 3, square``);
the reference writes one assignment per operation, a format a tiny model can learn. The hidden
tests are ``(args, expected)`` cases checked with exact types, run in a ``CodeSandbox`` (separate
process, resource limits, no network; see ``llm_gym.sandbox``), so the gold reward
is the fraction of tests passed and a hostile completion scores 0 with its cause reported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from llm_gym.sandbox import CodeSandbox, SandboxLimits, sandbox_jobs
from llm_gym.tasks.base import Sample
from llm_gym.tasks.family import FamilyTask
from llm_gym.tasks.files import DatasetError, require_text

# name -> (statement template, parameter range or None); each runs on x and is exact on ints.
OPERATIONS: dict[str, tuple[str, tuple[int, int] | None]] = {
    "add": ("x=x+{k}", (1, 9)),
    "sub": ("x=x-{k}", (1, 9)),
    "times": ("x=x*{k}", (2, 5)),
    "mod": ("x=x%{k}", (2, 9)),
    "square": ("x=x*x", None),
    "negate": ("x=-x", None),
    "half": ("x=x//2", None),
}


class Code(FamilyTask):
    """``f(x): add 3, square\\n`` -> ``def f(x):\\n x=x+3\\n x=x*x\\n return x``; gold: hidden tests passed.

    Files: JSONL rows with ``prompt`` and ``tests`` (a list of ``assert`` strings, or of
    ``[args, expected]`` pairs with ``entry_point``), optionally ``solution`` (the SFT reference).
    HumanEval-shaped rows (``prompt``, ``test`` defining ``check(candidate)``, ``entry_point``,
    ``canonical_solution``) also load: the program run is then prompt + completion.
    """

    name = "code"
    description = "write a short Python function from a spec; gold: hidden tests passed in a sandbox"
    default_reward = "code_tests"
    max_prompt_tokens = 32
    max_new_tokens = 40
    data_format = "code"

    def __init__(
        self,
        max_ops: int = 2,
        tests: int = 5,
        workers: int = 2,
        cpu_seconds: int = 2,
        wall_seconds: float = 6.0,
        **data_kwargs: Any,
    ):
        if max_ops < 1 or tests < 1:
            raise ValueError(f"code needs max_ops >= 1 and tests >= 1, got {max_ops}, {tests}")
        self.max_ops, self.n_tests = max_ops, tests
        self.sandbox = CodeSandbox(SandboxLimits(cpu_seconds=cpu_seconds, wall_seconds=wall_seconds), workers=workers)
        super().__init__(**data_kwargs)

    def generate(self, rng: np.random.Generator) -> Sample:
        names = list(OPERATIONS)
        steps, statements = [], []
        for _ in range(int(rng.integers(1, self.max_ops + 1))):
            name = names[int(rng.integers(len(names)))]
            template, bounds = OPERATIONS[name]
            k = int(rng.integers(bounds[0], bounds[1] + 1)) if bounds else None
            steps.append(f"{name} {k}" if bounds else name)
            statements.append(template.format(k=k))
        source = "def f(x):\n" + "".join(f" {s}\n" for s in statements) + " return x"
        namespace: dict[str, Any] = {}
        exec(source, namespace)  # our own generated reference, to compute the expected outputs
        inputs = [int(x) for x in rng.choice(np.arange(-20, 21), size=self.n_tests, replace=False)]
        tests = [[[x], namespace["f"](x)] for x in inputs]
        return Sample(f"f(x): {', '.join(steps)}\n", source, {"tests": tests, "entry_point": "f"})

    def row_to_sample(self, row: Mapping[str, Any], where: str) -> Sample:
        prompt = require_text(row, "prompt", where, self.data_format)
        meta: dict[str, Any] = {k: v for k, v in row.items() if k not in ("prompt", "tests", "solution")}
        if "tests" not in row and isinstance(row.get("test"), str) and isinstance(row.get("entry_point"), str):
            meta.update(tests=[f"{row['test']}\ncheck({row['entry_point']})"], code_prefix=prompt)
            return Sample(prompt, str(row.get("canonical_solution", "")), meta)
        tests = row.get("tests")
        if tests is None:
            raise DatasetError(f"{where}: row is missing field 'tests' (format 'code')")
        if not isinstance(tests, list) or not tests:
            raise DatasetError(f"{where}: field 'tests' must be a non-empty list (format 'code')")
        for test in tests:
            is_case = isinstance(test, list) and len(test) == 2 and isinstance(test[0], list)
            if not isinstance(test, str) and not is_case:
                raise DatasetError(f"{where}: each test must be an assert string or [args, expected], got {test!r}")
            if is_case and not isinstance(row.get("entry_point"), str):
                raise DatasetError(f"{where}: [args, expected] tests need a string field 'entry_point'")
        solution = row.get("solution", "")
        if not isinstance(solution, str):
            raise DatasetError(f"{where}: field 'solution' must be a string (format 'code')")
        return Sample(prompt, solution, {**meta, "tests": tests})

    def verify(
        self, prompts: Sequence[str], completions: Sequence[str], metadata: Sequence[Mapping[str, Any]]
    ) -> np.ndarray:
        results = self.sandbox.run_batch(sandbox_jobs(completions, metadata))
        return np.array([r.reward for r in results], dtype=np.float32)
