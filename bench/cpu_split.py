"""CPU time per job, split by who spent it (Python, PostgreSQL, Redis), read from /proc during a load.

A ratio of rates says how far the API is from the raw INSERT + publish; this says where the difference
goes. On the 2-core machines everything shares the same cores, so a microsecond of PostgreSQL is a
microsecond the API's Python does not get.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

KINDS = ("python", "postgres", "redis")


def _kind(cmdline: str) -> str | None:
    if "postgres" in cmdline:
        return "postgres"
    if "redis" in cmdline and "python" not in cmdline:
        return "redis"
    if "python" in cmdline or "gunicorn" in cmdline:
        return "python"
    return None  # wrk and everything else on the machine


def cpu_seconds_by_pid() -> dict[int, tuple[str, float]]:
    """(kind, user + system seconds) of every process whose kind counts."""
    tick = os.sysconf("SC_CLK_TCK")
    found: dict[int, tuple[str, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        kind = _kind(cmdline)
        if kind is not None:
            fields = stat.rsplit(")", 1)[1].split()
            found[int(entry.name)] = (kind, (int(fields[11]) + int(fields[12])) / tick)
    return found


@dataclass
class CpuWindow:
    """Samples /proc `lead` seconds after `start()` and again `span` seconds later, from a thread, so
    that processes that exit when the load ends (the raw runs' and their PostgreSQL backends) are counted."""

    lead: float
    span: float
    _before: dict[int, tuple[str, float]] = field(default_factory=dict)
    _after: dict[int, tuple[str, float]] = field(default_factory=dict)
    _thread: threading.Thread | None = None

    def start(self) -> CpuWindow:
        def sample() -> None:
            time.sleep(self.lead)
            self._before = cpu_seconds_by_pid()
            time.sleep(self.span)
            self._after = cpu_seconds_by_pid()

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def per_job(self, jobs_per_second: float) -> dict[str, float]:
        """Microseconds of CPU per job by kind, for a load that ran at `jobs_per_second` over the window."""
        assert self._thread is not None
        self._thread.join()
        spent = dict.fromkeys(KINDS, 0.0)
        for pid, (kind, seconds) in self._after.items():
            spent[kind] += seconds - self._before.get(pid, (kind, 0.0))[1]
        jobs = jobs_per_second * self.span
        return {kind: 1e6 * seconds / jobs if jobs else 0.0 for kind, seconds in spent.items()}


def describe(split: dict[str, float]) -> str:
    """`110+47+3` (Python + PostgreSQL + Redis, µs per job)."""
    return "+".join(f"{split[kind]:.0f}" for kind in KINDS)
