"""The README is executable documentation: its set-up commands are the ones CI runs, and every other
snippet runs as written.

Python blocks run in order in one namespace, in a temporary directory where a small version of the
demo's artefacts exists (``runs/demo/sft`` and ``runs/demo/reward_model``, the paths ``llm-gym
demo`` writes); a ``print(...)`` line with a trailing comment must print exactly that comment.
Shell blocks (```bash, ```sh, ```shell) other than the set-up commands run with ``bash -e`` in the
same directory, in order, with this checkout's ``llm-gym`` and ``python`` first on the path; each
must exit 0. The pipeline section's block is the exception: at its sizes it trains for many minutes,
so ``tests/test_cli.py`` runs those very lines with size flags appended. Inline code spans are prose
and are not run.
"""

from __future__ import annotations

import ast
import contextlib
import io
import os
import re
import subprocess
import sys
import tokenize
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SHELL = ("bash", "sh", "shell")
SETUP_SECTION = "Set up"
PIPELINE_SECTION = "The pipeline, step by step"  # run shrunk by tests/test_cli.py
SHELL_TIMEOUT_S = 900


@dataclass
class Snippet:
    language: str
    code: str
    line: int  # README line of the snippet's first code line
    section: str


def snippets(text: str) -> list[Snippet]:
    found, section = [], ""
    lines = text.splitlines()
    number = 0
    while number < len(lines):
        line = lines[number]
        if line.startswith("## "):
            section = line[3:].strip()
        fence = re.match(r"^```(\w+)\s*$", line)
        if fence:
            end = lines.index("```", number + 1)
            found.append(Snippet(fence.group(1), "\n".join(lines[number + 1 : end]) + "\n", number + 2, section))
            number = end
        number += 1
    return found


def setup_commands() -> list[Snippet]:
    return [s for s in snippets(README.read_text()) if s.language in SHELL and s.section == SETUP_SECTION]


def test_ci_runs_the_readme_setup_commands():
    readme_commands = [s.code.strip() for s in setup_commands()]
    assert len(readme_commands) == 2, "README's set-up section must have exactly two commands"
    ci_lines = [line for line in (ROOT / ".ci/run").read_text().splitlines() if line.startswith("python3 ")]
    assert sorted(ci_lines) == sorted(readme_commands)


def test_snippet_parser_finds_blocks_and_sections():
    text = "## A\n```python\nx = 1\n```\n## Set up\n```bash\necho hi\n```\n"
    assert [(s.language, s.code, s.line, s.section) for s in snippets(text)] == [
        ("python", "x = 1\n", 3, "A"), ("bash", "echo hi\n", 7, "Set up"),
    ]


@pytest.fixture(scope="session")
def demo_workdir(tmp_path_factory) -> Path:
    """A directory holding small versions of what ``llm-gym demo`` writes: runs/demo/{sft,reward_model}."""
    from transformers import GPT2Config, GPT2ForSequenceClassification

    from llm_gym.models import TinyModelConfig, save_tiny
    from llm_gym.tasks import make_task

    workdir = tmp_path_factory.mktemp("readme")
    task = make_task("count")  # the demo's task
    texts = [s.prompt + s.reference for s in task.dataset("train", 500, seed=0)]
    sft = save_tiny(workdir / "runs/demo/sft", texts, "char", TinyModelConfig(n_layer=1, n_embd=32, n_head=2))
    from llm_gym.models import load_tokenizer

    tokenizer = load_tokenizer(sft)
    config = GPT2Config(vocab_size=len(tokenizer), n_layer=1, n_embd=16, n_head=2, n_positions=64, num_labels=1,
                        pad_token_id=tokenizer.pad_token_id)
    GPT2ForSequenceClassification(config).save_pretrained(workdir / "runs/demo/reward_model")
    tokenizer.save_pretrained(workdir / "runs/demo/reward_model")
    return workdir


def _trailing_comments(code: str) -> dict[int, str]:
    """Line (1-based, within the block) -> text of the comment that ends it."""
    comments = {}
    for token in tokenize.generate_tokens(io.StringIO(code).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = token.string[1:].strip()
    return comments


def _is_print(statement: ast.stmt) -> bool:
    return (isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call)
            and isinstance(statement.value.func, ast.Name) and statement.value.func.id == "print")


def run_python(snippet: Snippet, namespace: dict) -> list[tuple[int, str, str]]:
    """Run one block statement by statement; ``(README line, printed, expected)`` for each commented print."""
    tree = ast.parse(snippet.code)
    comments = _trailing_comments(snippet.code)
    checked = []
    for statement in tree.body:
        expected = comments.get(statement.end_lineno) if _is_print(statement) else None
        module = ast.Module(body=[statement], type_ignores=[])
        ast.increment_lineno(module, snippet.line - 1)  # tracebacks point at README lines
        code = compile(module, str(README), "exec", dont_inherit=True)  # not this file's __future__ imports
        if expected is None:
            exec(code, namespace)
            continue
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(code, namespace)
        checked.append((statement.end_lineno, out.getvalue().strip(), expected))
    return checked


def test_readme_python_blocks_run_and_print_what_they_show(demo_workdir, monkeypatch):
    monkeypatch.chdir(demo_workdir)
    blocks = [s for s in snippets(README.read_text()) if s.language == "python"]
    assert blocks, "README has no python block"
    namespace: dict = {"__name__": "__readme__"}
    checked = [result for block in blocks for result in run_python(block, namespace)]
    assert checked, "no print(...) line with the value it prints in a comment"
    for line, printed, expected in checked:
        assert printed == expected, f"README.md line {line}: printed {printed!r}, the README shows {expected!r}"


def test_readme_shell_blocks_run(demo_workdir):
    setup = {s.line for s in setup_commands()}
    blocks = [s for s in snippets(README.read_text())
              if s.language in SHELL and s.line not in setup and s.section != PIPELINE_SECTION]
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    for block in blocks:
        done = subprocess.run(["bash", "-e", "-c", block.code], cwd=demo_workdir, env=env, capture_output=True,
                              text=True, timeout=SHELL_TIMEOUT_S)
        assert done.returncode == 0, f"README.md line {block.line}:\n{block.code}\n{done.stdout[-2000:]}{done.stderr[-3000:]}"


def test_a_print_that_differs_from_its_comment_is_reported_with_its_readme_line():
    snippet = Snippet("python", 'x = 2\nprint(x + 1)   # 4\nprint("a # b")  # a # b\n', 10, "S")
    assert run_python(snippet, {}) == [(11, "3", "4"), (12, "a # b", "a # b")]


def test_readme_results_table_is_the_committed_boards_headline():
    """The README quotes the board's numbers; they must be the page's own, rendered from the records."""
    page = (ROOT / "benchmarks" / "results" / "leaderboard" / "leaderboard.md").read_text()
    section = page.split("## Headline: both tracks", 1)[1].split("\n## ", 1)[0]
    table = "\n".join(line for line in section.splitlines() if line.startswith("|"))
    assert table.count("\n") > 2, "the committed board has no headline table: re-render it (--stages leaderboard)"
    assert table in README.read_text(), "README's results table differs from benchmarks/results/leaderboard's headline"
