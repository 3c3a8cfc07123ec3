"""Run generated Python against hidden tests in a separate, limited process.

Why a process per program and not ``exec`` in the trainer: a policy under RL will write infinite
loops, fork bombs, huge allocations and file deletions, by accident or because they pay. Each
program runs in a fresh ``python -I -S -B`` whose harness (``_HARNESS`` below) lowers its own
limits before any generated code runs. What is enforced, and by whom:

- by the kernel (hard guarantees): CPU time (``RLIMIT_CPU``, then SIGKILL), address space
  (``RLIMIT_AS``: allocations fail with ``MemoryError``), size of any written file, stdout and
  stderr included (``RLIMIT_FSIZE``), open files, no new processes or threads (``RLIMIT_NPROC=0``;
  the kernel ignores it for root, hence the next point), a wall-clock timeout after which the
  whole process group is killed, and the working directory is a fresh temp dir removed afterwards;
- when the trainer runs as root: the program runs as ``nobody`` (so it cannot write, remove or
  signal anything it does not own, and ``RLIMIT_NPROC`` applies). Stdlib modules the tests may
  need are imported before the switch, since root's Python may not be readable by ``nobody``;
- when ``unshare --net`` works (root, or unprivileged user namespaces): an empty network namespace,
  so no network at all. ``CodeSandbox.guarantees`` says which of these two are active here;
- by a Python audit hook (defence in depth, not a security boundary -- PEP 578): sockets,
  subprocesses, ``fork``/``exec``/``kill``, ``ctypes``, raising limits, writes and removals outside
  the temp dir and more than ``max_written_files`` opened for writing are refused, and any refusal
  makes the run a ``violation`` even if the program catches the error.

The result travels in a file tagged with a random nonce that the harness reads and deletes before
the program runs, so printing a fake result does not pass; a program that inspects the harness's
memory (``gc``, frame objects) could still forge one -- this is a sandbox for the machine, not a
proof that a reported pass is honest. ``io`` test cases compare ``type(result) is type(expected)``
with the harness's own ``type``, so objects with a lying ``__eq__`` fail them; free-form ``assert``
tests (HumanEval/MBPP) do not have that protection.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

HiddenTest = str | tuple[Sequence[Any], Any] | list
FAILURE_CAUSES = ("syntax_error", "error", "timeout", "memory", "output_limit", "violation", "crashed")
# Imported before switching to ``nobody`` (only then): cheap modules short generated functions use.
_PRELOAD = ("math", "re", "collections", "itertools", "functools", "operator", "string", "heapq", "bisect")

_HARNESS = r'''
import json, os, resource, sys
job_path = sys.argv[1]
with open(job_path) as f:
    job = json.load(f)
os.remove(job_path)
nonce, workdir, entry_point = job["nonce"], os.path.realpath(os.getcwd()), job["entry_point"]
result_fd = os.open("result.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
for module in job["preload"]:
    try:
        __import__(module)
    except ImportError:
        pass
for name, (soft, hard) in job["rlimits"].items():
    resource.setrlimit(getattr(resource, name), (soft, hard))
if job["uid"] is not None:
    os.setgroups([])
    os.setgid(job["gid"])
    os.setuid(job["uid"])

_type, _write, _dumps, _exit, _flush = type, os.write, json.dumps, os._exit, sys.stdout.flush
violations, written = [], [0]
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
BLOCKED = ("socket.", "subprocess.", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
           "os.forkpty", "os.kill", "os.killpg", "os.setuid", "os.setgid", "ctypes.", "resource.", "pty.",
           "signal.pthread_kill", "sys.setrecursionlimit", "sys.settrace", "sys.setprofile", "webbrowser.")
BLOCKED_IMPORTS = {"ctypes", "_ctypes", "_posixsubprocess", "socket", "_socket", "ssl", "multiprocessing", "subprocess"}
PATH_EVENTS = {"os.remove", "os.rmdir", "os.rename", "os.mkdir", "os.chmod", "os.chown", "os.link", "os.symlink",
               "os.truncate", "os.utime", "os.chflags", "os.lchflags", "os.setxattr", "os.removexattr",
               "shutil.rmtree", "shutil.copyfile", "shutil.copymode", "shutil.copystat", "shutil.copytree",
               "shutil.move", "shutil.chown", "shutil.make_archive", "shutil.unpack_archive"}

def inside(path):
    if isinstance(path, int):
        return True
    real = os.path.realpath(os.fsdecode(path))
    return real == workdir or real.startswith(workdir + os.sep)

def deny(event):
    violations.append(event)
    raise PermissionError("sandbox refused " + event)

def audit(event, args):
    if event.startswith(BLOCKED):
        deny(event)
    if event == "import" and args[0].partition(".")[0] in BLOCKED_IMPORTS:
        deny("import " + args[0])
    if event == "open":
        path, mode, flags = args
        writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & WRITE_FLAGS)
        if writes and not inside(path):
            deny("open for writing outside the sandbox: %s" % (path,))
        if writes:
            written[0] += 1
            if written[0] > job["max_written_files"]:
                deny("too many files opened for writing")
    if event in PATH_EVENTS and not all(inside(a) for a in args if isinstance(a, (str, bytes, os.PathLike))):
        deny(event + " outside the sandbox")

def finish(status, passed=0, detail=""):
    try:
        _flush()
    except OSError as exc:
        if exc.errno == 27:
            status, detail = "output_limit", "stdout exceeded the output limit"
    if violations:
        status, detail = "violation", "; ".join(dict.fromkeys(violations))[:300]
    record = {"nonce": nonce, "status": status, "passed": passed, "detail": str(detail)[:300]}
    _write(result_fd, _dumps(record).encode())
    _exit(0)

def cause(exc):
    if violations:
        return "violation"
    if isinstance(exc, MemoryError):
        return "memory"
    if isinstance(exc, OSError) and exc.errno == 27:
        return "output_limit"
    return None

sys.addaudithook(audit)
try:
    code = compile(job["program"], "<completion>", "exec")
except (SyntaxError, ValueError) as exc:
    finish("syntax_error", detail=repr(exc))
namespace = {"__name__": "__completion__"}
try:
    exec(code, namespace)
except BaseException as exc:
    finish(cause(exc) or "error", detail=repr(exc))
if entry_point and not callable(namespace.get(entry_point)):
    finish("error", detail="the program defines no function %r" % entry_point)
passed, first_failure = 0, ""
for test in job["tests"]:
    try:
        if isinstance(test, str):
            exec(compile(test, "<test>", "exec"), namespace)
            ok = True
        else:
            args, expected = test
            result = namespace[entry_point](*args)
            ok = _type(result) is _type(expected) and result == expected
            if not ok and not first_failure:
                first_failure = "%s%r returned %r, expected %r" % (entry_point, tuple(args), result, expected)
    except BaseException as exc:
        if cause(exc):
            finish(cause(exc), passed, repr(exc))
        ok = False
        first_failure = first_failure or repr(exc)
    passed += bool(ok)
finish("passed" if passed == len(job["tests"]) else "failed", passed, first_failure)
'''


@dataclass
class SandboxLimits:
    """Per-program limits; the defaults fit short generated functions on a loaded 2-core machine."""

    cpu_seconds: int = 2
    wall_seconds: float = 6.0
    memory_mb: int = 256
    output_bytes: int = 1 << 20
    max_open_files: int = 32
    max_written_files: int = 16


@dataclass(frozen=True)
class SandboxResult:
    """How one program fared: ``status`` is ``passed``/``failed`` or one of ``FAILURE_CAUSES``."""

    status: str
    passed: int
    total: int
    detail: str
    wall_s: float

    @property
    def reward(self) -> float:
        """Fraction of tests passed; 0 whenever the run ended in a failure cause."""
        if self.status not in ("passed", "failed") or self.total == 0:
            return 0.0
        return self.passed / self.total


@lru_cache(maxsize=1)
def _network_namespace_works() -> bool:
    launcher = shutil.which("unshare")
    if launcher is None:
        return False
    probe = subprocess.run([launcher, "--net", "--", "true"], capture_output=True, timeout=10)
    return probe.returncode == 0


def _unprivileged_ids() -> tuple[int, int] | None:
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam("nobody")
    except KeyError:
        return None
    return entry.pw_uid, entry.pw_gid


class CodeSandbox:
    """Runs programs against tests with bounded parallelism (one process each) and an LRU cache.

    The cache lets the proxy reward and the gold verifier of an env score the same completion with
    one execution. ``tests`` are ``assert`` statements (strings) or ``(args, expected)`` pairs that
    call ``entry_point``.
    """

    def __init__(
        self,
        limits: SandboxLimits | None = None,
        workers: int = 2,
        isolate_network: bool = True,
        drop_privileges: bool = True,
        cache_size: int = 4096,
    ):
        if workers < 1:
            raise ValueError(f"sandbox workers must be >= 1, got {workers}")
        self.limits, self.workers, self.cache_size = limits or SandboxLimits(), workers, cache_size
        self.network_namespace = isolate_network and _network_namespace_works()
        self.ids = _unprivileged_ids() if drop_privileges else None
        self._cache: OrderedDict[str, SandboxResult] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def guarantees(self) -> dict[str, Any]:
        """Which isolation layers are active on this machine (see the module docstring)."""
        return {
            "network": "empty network namespace" if self.network_namespace else "audit hook only",
            "user": "nobody" if self.ids else "same user as the trainer",
            "limits": asdict(self.limits),
        }

    def run(self, program: str, tests: Sequence[HiddenTest], entry_point: str | None = None) -> SandboxResult:
        return self.run_batch([(program, tests, entry_point)])[0]

    def run_batch(self, jobs: Sequence[tuple[str, Sequence[HiddenTest], str | None]]) -> list[SandboxResult]:
        """Run every ``(program, tests, entry_point)``; at most ``workers`` processes at a time."""
        keys = [json.dumps(job, sort_keys=True, default=list) for job in jobs]
        with self._lock:
            results: dict[str, SandboxResult] = {k: self._cache[k] for k in keys if k in self._cache}
        todo = {k: job for k, job in zip(keys, jobs) if k not in results}
        if todo:
            with ThreadPoolExecutor(max_workers=min(self.workers, len(todo))) as pool:
                fresh = dict(zip(todo, pool.map(lambda job: self._execute(*job), todo.values())))
            results.update(fresh)
            with self._lock:
                for key, result in fresh.items():
                    self._cache[key] = result
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return [results[k] for k in keys]

    def _execute(self, program: str, tests: Sequence[HiddenTest], entry_point: str | None) -> SandboxResult:
        tests = [t if isinstance(t, str) else list(t) for t in tests]
        if any(not isinstance(t, str) for t in tests) and not entry_point:
            raise ValueError("(args, expected) test cases need an entry_point (the function to call)")
        limits, start = self.limits, time.monotonic()
        try:  # compiling runs nothing; a program that does not parse needs no process (most RL samples)
            compile(program, "<completion>", "exec")
        except (SyntaxError, ValueError) as exc:
            return SandboxResult("syntax_error", 0, len(tests), repr(exc)[:300], time.monotonic() - start)
        workdir = tempfile.mkdtemp(prefix="llm_gym_sandbox_")
        try:
            nonce = secrets.token_hex(16)
            job = {
                "nonce": nonce,
                "program": program,
                "tests": tests,
                "entry_point": entry_point,
                "preload": _PRELOAD if self.ids else (),
                "max_written_files": limits.max_written_files,
                "uid": self.ids[0] if self.ids else None,
                "gid": self.ids[1] if self.ids else None,
                "rlimits": {
                    "RLIMIT_CPU": (limits.cpu_seconds, limits.cpu_seconds + 1),
                    "RLIMIT_AS": (limits.memory_mb << 20,) * 2,
                    "RLIMIT_FSIZE": (limits.output_bytes,) * 2,
                    "RLIMIT_NOFILE": (limits.max_open_files,) * 2,
                    "RLIMIT_NPROC": (0, 0),
                    "RLIMIT_CORE": (0, 0),
                },
            }
            with open(os.path.join(workdir, "job.json"), "w") as f:
                json.dump(job, f)
            stdout = open(os.path.join(workdir, "stdout.txt"), "wb")
            stderr = open(os.path.join(workdir, "stderr.txt"), "wb")
            if self.ids:
                os.chown(workdir, *self.ids)
            command = [sys.executable, "-I", "-S", "-B", "-c", _HARNESS, "job.json"]
            if self.network_namespace:
                command = ["unshare", "--net", "--", *command]
            env = {"PATH": "/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LC_ALL": "C.UTF-8"}
            with stdout, stderr:
                process = subprocess.Popen(
                    command, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                    start_new_session=True,
                )
                try:
                    process.wait(timeout=limits.wall_seconds)
                    timed_out = False
                except subprocess.TimeoutExpired:
                    timed_out = True
                finally:
                    try:
                        os.killpg(process.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    process.wait()
            return self._classify(workdir, nonce, process.returncode, timed_out, len(tests), time.monotonic() - start)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def _classify(self, workdir: str, nonce: str, returncode: int, timed_out: bool, total: int, wall: float):
        def tail(name: str) -> str:
            with open(os.path.join(workdir, name), "rb") as f:
                f.seek(max(0, os.fstat(f.fileno()).st_size - 300))
                return f.read().decode(errors="replace")

        if timed_out:
            return SandboxResult("timeout", 0, total, f"wall-clock limit {self.limits.wall_seconds}s", wall)
        if returncode in (-signal.SIGXCPU, -signal.SIGKILL):
            return SandboxResult("timeout", 0, total, f"CPU limit {self.limits.cpu_seconds}s", wall)
        try:
            with open(os.path.join(workdir, "result.json"), "rb") as f:
                record = json.loads(f.read(4096))
            if not isinstance(record, dict) or record.get("nonce") != nonce:
                raise ValueError("result without the harness nonce")
            return SandboxResult(str(record["status"]), int(record["passed"]), total, str(record["detail"]), wall)
        except (OSError, ValueError, KeyError, TypeError):
            pass
        sizes = [os.path.getsize(os.path.join(workdir, name)) for name in ("stdout.txt", "stderr.txt")]
        if max(sizes) >= self.limits.output_bytes or returncode == -signal.SIGXFSZ:
            return SandboxResult("output_limit", 0, total, f"output exceeded {self.limits.output_bytes} bytes", wall)
        stderr = tail("stderr.txt")
        status = "memory" if "MemoryError" in stderr else "crashed"
        return SandboxResult(status, 0, total, f"exit code {returncode}, no result; stderr: {stderr[-200:]}", wall)


def sandbox_jobs(
    completions: Sequence[str], metadata: Sequence[Mapping[str, Any]]
) -> list[tuple[str, Sequence[HiddenTest], str | None]]:
    """``(program, tests, entry_point)`` per completion from the metadata code tasks attach."""
    try:
        return [(m.get("code_prefix", "") + c, m["tests"], m.get("entry_point")) for c, m in zip(completions, metadata)]
    except KeyError as err:
        raise KeyError("code rewards need metadata 'tests' (the hidden tests) for every sample") from err
