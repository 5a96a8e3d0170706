"""Child processes in their own sessions, and a tiny supervisor that stops them all on the first exit or signal.

`ManagedProcess` is the one way Assay starts a child: the worker launcher, `make run`, the tests'
stack and the benchmarks use it.
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
from typing import IO, Self


@dataclass
class ManagedProcess:
    """A child that leads its own process group, so a signal to us reaches only us and we stop it in order."""

    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    logfile: Path | None = None  # None: the child writes to our stdout/stderr
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        output: IO[bytes] | None = self.logfile.open("ab") if self.logfile else None
        try:
            self.popen = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
                stdout=output,
                stderr=subprocess.STDOUT if output else None,
            )
        finally:
            if output:
                output.close()
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None, f"{self.name} was never started"
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, signum: int) -> None:
        """Send a signal to the whole process group (a Celery worker's children, gunicorn's workers)."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signum)

    def kill(self) -> None:
        """SIGKILL the whole process group: no clean-up, no acknowledgements."""
        if self.alive():
            self.signal(signal.SIGKILL)
            assert self.popen is not None
            self.popen.wait(10)

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM (Celery's warm shutdown, gunicorn's graceful one), then SIGKILL if it lingers."""
        if not self.alive():
            return
        self.signal(signal.SIGTERM)
        assert self.popen is not None
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()


@dataclass
class Supervisor:
    cwd: Path
    children: list[ManagedProcess] = field(default_factory=list)

    def start(self, name: str, argv: list[str], env: dict[str, str], logfile: Path | None = None) -> ManagedProcess:
        child = ManagedProcess(name, argv, env, self.cwd, logfile).start()
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
                    assert child.popen is not None
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
        """Stop children in reverse start order, all within one deadline."""
        for child in reversed(self.children):
            child.signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in reversed(self.children):
            if child.popen is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.popen.wait(max(0.1, deadline - time.monotonic()))
            child.kill()
