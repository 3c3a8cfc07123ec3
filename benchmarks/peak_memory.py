"""Peak resident memory of the current process; stdlib only, so the TRL scripts (run by path in
their own virtualenvs, without llm_gym) import it too."""

from __future__ import annotations

import resource
from pathlib import Path


def peak_rss_mb() -> float:
    """This process's peak resident memory. ``VmHWM`` is per address space, so unlike ``ru_maxrss`` it does
    not inherit the parent's peak across fork + exec."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
