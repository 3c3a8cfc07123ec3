"""Imports run one way: no circle among the modules of ``llm_gym/`` or ``benchmarks/``.

The graph is built from the module-level imports (``ast``), the ones that run when a module is
imported. A function-level import of our own modules would hide a circle from that graph, so every
function-level import is listed here: only optional heavy third-party dependencies may be imported
inside a function.
"""

from __future__ import annotations

import ast
import collections
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# (module, imported name): imports inside functions, each an optional heavy dependency.
ALLOWED_FUNCTION_LEVEL_IMPORTS = {
    ("llm_gym.tasks.reasoning_gym", "reasoning_gym"),  # extra [reasoning]; ~1 s to import
    ("llm_gym.tasks.datasets", "datasets"),  # extra [datasets]
    ("llm_gym.feedback", "datasets"),  # extra [datasets]
    # transformers' modelling stack (~2 s to import), loaded with the first model: not by env-only processes
    ("llm_gym.models", "transformers"),
    ("llm_gym.rewards.learned", "transformers"),
    ("llm_gym.rewards.text_metrics", "rouge_score"),  # imports nltk and scipy.stats (~1 s)
}


def _module_name(path: Path) -> str:
    name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    return name.removesuffix(".__init__")


def _modules(package: str) -> dict[str, Path]:
    return {_module_name(f): f for f in sorted((ROOT / package).rglob("*.py"))}


def _targets(node: ast.Import | ast.ImportFrom, module: str, path: Path) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        base = ".".join(package[: len(package) - (node.level - 1)] + ([base] if base else []))
    return [base] + [f"{base}.{alias.name}" for alias in node.names]


def import_graph(package: str) -> dict[str, set[str]]:
    """Module -> the modules of ``package`` it imports at module level (submodule imports included)."""
    modules = _modules(package)
    graph: dict[str, set[str]] = collections.defaultdict(set)
    for module, path in modules.items():
        for node in ast.parse(path.read_text()).body:
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for target in _targets(node, module, path):
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != module:
                    graph[module].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def function_level_imports(package: str) -> set[tuple[str, str]]:
    found = set()
    for module, path in _modules(package).items():
        for top in ast.parse(path.read_text()).body:
            if isinstance(top, (ast.Import, ast.ImportFrom)):
                continue
            for node in ast.walk(top):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    found.update((module, target.split(".")[0] if not target.startswith(package) else target)
                                 for target in _targets(node, module, path)[:1])
    return found


@pytest.mark.parametrize("package", ["llm_gym", "benchmarks"])
def test_module_level_imports_are_acyclic(package):
    assert find_cycle(import_graph(package)) is None, " -> ".join(find_cycle(import_graph(package)))


def test_the_graph_builder_finds_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_llm_gym_imports_only_what_its_documented_one_way_layering_allows():
    """scoring and models import nothing of ours; tasks and rewards never import envs or each other."""
    graph = import_graph("llm_gym")

    def imports(prefix: str) -> set[str]:
        return {t for m, ts in graph.items() if m == prefix or m.startswith(prefix + ".") for t in ts}

    ours = lambda targets: {t for t in targets if t.startswith("llm_gym")}  # noqa: E731
    assert ours(imports("llm_gym.scoring")) == set()
    assert ours(imports("llm_gym.models")) == set()
    assert ours(imports("llm_gym.sandbox")) == set()
    tasks, rewards = imports("llm_gym.tasks"), imports("llm_gym.rewards")
    assert not {t for t in tasks if t.startswith(("llm_gym.envs", "llm_gym.rewards", "llm_gym.registration"))}
    assert not {t for t in rewards if t.startswith(("llm_gym.envs", "llm_gym.tasks", "llm_gym.registration"))}
    assert not {t for t in imports("llm_gym") if t.startswith(("agents", "benchmarks"))}


def test_function_level_imports_are_only_the_listed_optional_dependencies():
    assert function_level_imports("llm_gym") <= ALLOWED_FUNCTION_LEVEL_IMPORTS


def test_benchmarks_import_none_of_their_own_modules_inside_a_function():
    """benchmarks/ also imports heavy optional packages (trl, ray, torch) and llm_gym/agents lazily,
    for its worker processes and optional back-ends; a lazy import of a sibling module would hide a circle."""
    inside = {(m, t) for m, t in function_level_imports("benchmarks") if t.startswith("benchmarks")}
    assert inside == set()


def test_every_gymnasium_register_call_is_in_registration():
    callers = []
    for module, path in _modules("llm_gym").items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "register":
                if isinstance(node.func.value, ast.Name) and node.func.value.id in ("gymnasium", "gym"):
                    callers.append(module)
    assert set(callers) == {"llm_gym.registration"}


def test_envs_scored_by_rules_run_without_importing_the_modelling_stack():
    """A process that only steps envs (a vector env's worker, SB3's SubprocVecEnv) imports llm_gym and makes
    an env; transformers' models, nltk and scipy.stats (~3 s of imports) wait for the first model or ROUGE."""
    code = (
        "import sys, gymnasium, llm_gym\n"
        "env = gymnasium.make('llm_gym/Arithmetic-v0', granularity='sequence')\n"
        "env.reset(seed=0)\n"
        "env.step('148')\n"
        "envs = gymnasium.make_vec('llm_gym/Count-v0', num_envs=4, vectorization_mode='vector_entry_point')\n"
        "envs.reset(seed=0)\n"
        "print([m for m in ('transformers.modeling_utils', 'nltk', 'scipy.stats') if m in sys.modules])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[]"]
