"""A tiny process supervisor: start children in their own sessions, stop them all on the first exit or signal.

Used by the worker launcher (one Celery worker per GPU) and by `make run`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO


@dataclass
class Child:
    name: str
    popen: subprocess.Popen[bytes]


@dataclass
class Supervisor:
    cwd: Path
    children: list[Child] = field(default_factory=list)
    _stopping: bool = False

    def start(self, name: str, argv: list[str], env: dict[str, str], output: IO[bytes] | None = None) -> Child:
        """Each child leads its own process group, so Ctrl-C reaches only us and we stop them in order."""
        popen = subprocess.Popen(argv, env=env, cwd=self.cwd, start_new_session=True, stdout=output, stderr=output)
        child = Child(name, popen)
        self.children.append(child)
        return child

    def wait(self, poll: float = 0.5) -> int:
        """Block until a signal arrives or any child exits; then stop the rest. Returns an exit code."""
        received: list[int] = []

        def on_signal(signum: int, _frame: object) -> None:
            received.append(signum)

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            while not received:
                for child in self.children:
                    code = child.popen.poll()
                    if code is not None:
                        print(f"[supervisor] {child.name} exited with {code}; stopping the others", file=sys.stderr)
                        self.stop()
                        return code or 1
                time.sleep(poll)
            self.stop()
            return 0
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM (Celery's warm shutdown, gunicorn's graceful one), then SIGKILL whatever lingers."""
        for child in reversed(self.children):
            if child.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in reversed(self.children):
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.popen.wait(max(0.1, deadline - time.monotonic()))
            if child.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.popen.pid, signal.SIGKILL)
                child.popen.wait()
