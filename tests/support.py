"""Real processes for integration tests: gunicorn, Celery workers, Flower; plus a small HTTP client."""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from config.settings import ROOT
from workers.processes import (
    ProcessSpec,
    api_process,
    flower_process,
    inference_process,
    maintenance_process,
    tabular_process,
    webhooks_process,
)
from workers.supervisor import ManagedProcess

BIN_DIR = Path(sys.executable).parent  # the virtualenv's scripts (schemathesis)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.1, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


class Proc(ManagedProcess):
    """A child process of the test session, with its output in a log file we can search."""

    def log_text(self) -> str:
        assert self.logfile is not None
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    def log_events(self, event: str) -> list[dict[str, Any]]:
        found = []
        for line in self.log_text().splitlines():
            if line.startswith("{") and f'"{event}"' in line:
                with contextlib.suppress(json.JSONDecodeError):
                    record = json.loads(line)
                    if record.get("event") == event:
                        found.append(record)
        return found

    def batches_logged(self, jobs: int, since: int = 0, timeout: float = 60) -> list[dict[str, Any]]:
        """The 'batch processed' records after the first `since`, once they account for `jobs` jobs.

        The worker logs a batch after its commit lands, so a test that saw the jobs final in the
        database may read the log a moment before the line is there.
        """

        def enough() -> list[dict[str, Any]] | None:
            records = self.log_events("batch processed")[since:]
            return records if sum(r["size"] for r in records) >= jobs else None

        return wait_for(enough, timeout, what=f"'batch processed' lines for {jobs} jobs")


@dataclass
class Stack:
    """Starts and stops the service's processes for one test session, from the process table."""

    env: dict[str, str]
    logdir: Path
    queue_prefix: str
    procs: list[Proc] = field(default_factory=list)
    kept: list[Proc] = field(default_factory=list)
    _count: int = 0

    def start(self, spec: ProcessSpec, env: dict[str, str] | None = None, name: str | None = None) -> Proc:
        self._count += 1
        label = name or spec.kind
        proc = Proc(
            label,
            spec.argv(),
            {**self.env, **spec.env, **(env or {})},
            ROOT,
            self.logdir / f"{self._count:02d}-{label}.log",
        )
        self.procs.append(proc)
        return proc.start()

    def _prefix(self, env: dict[str, str]) -> str:
        return env.get("ASSAY_QUEUE_PREFIX", self.queue_prefix)

    def api(self, **env: str) -> tuple[Proc, str]:
        port = free_port()
        proc = self.start(api_process(), {"ASSAY_API_BIND": f"127.0.0.1:{port}", "ASSAY_API_WORKERS": "2", **env})
        url = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            assert proc.alive(), proc.log_text()[-3000:]
            with contextlib.suppress(requests.RequestException):
                return requests.get(url + "/health", timeout=1).status_code == 200
            return False

        wait_for(healthy, 30, what="gunicorn /health")
        return proc, url

    def worker(self, name: str = "w", families: tuple[str, ...] = ("text",), **env: str) -> Proc:
        """An inference worker (solo pool) for these model families; returns once models are warm."""
        queues = [f"{self._prefix(env)}.{f}" for f in families]
        proc = self.start(inference_process(f"{name}@%h", queues), env, name=f"worker-{name}")

        def ready() -> bool:
            assert proc.alive(), proc.log_text()[-3000:]
            return bool(proc.log_events("worker ready"))

        wait_for(ready, 120, interval=0.2, what=f"worker {name} ready")
        return proc

    def tabular(self, name: str = "tabular", **env: str) -> Proc:
        """The call-record worker (its own `tabular` queue, CPU, DuckDB); returns once it is ready."""
        spec = tabular_process(f"{self._prefix(env)}.tabular", 0, hostname=f"{name}@%h")
        proc = self.start(spec, env, name=name)
        wait_for(lambda: bool(proc.log_events("worker ready")) or not proc.alive(), 60, what=f"{name} ready")
        assert proc.alive(), proc.log_text()[-3000:]
        return proc

    def _wait_celery_ready(self, proc: Proc, what: str) -> Proc:
        wait_for(lambda: "ready." in proc.log_text() or not proc.alive(), 60, what=what)
        assert proc.alive(), proc.log_text()[-3000:]
        return proc

    def sweeper(self, **env: str) -> Proc:
        """The maintenance worker with the beat scheduler embedded: runs the sweep periodically."""
        self._count += 1
        spec = maintenance_process(f"{self._prefix(env)}.maintenance", str(self.logdir / f"beat-{self._count}"))
        return self._wait_celery_ready(self.start(spec, env, name="sweeper"), "sweeper ready")

    def webhooks(self, **env: str) -> Proc:
        """The webhook delivery worker: its own queue, a gevent pool, no models."""
        prefix = self._prefix(env)
        spec = webhooks_process(f"{prefix}.webhooks", 8, hostname=f"webhooks-{prefix}@%h")
        return self._wait_celery_ready(self.start(spec, env), "webhook worker ready")

    def flower(self, port: int, user: str, password: str) -> Proc:
        return self.start(flower_process(port, "127.0.0.1", user, password))

    def keep(self, proc: Proc) -> None:
        """Keep `proc` for the whole session (`stop_since` leaves it alone)."""
        self.kept.append(proc)

    def stop_since(self, mark: int) -> None:
        """Stop the processes started after the first `mark` ones, except the kept ones."""
        for proc in reversed(self.procs[mark:]):
            if not any(proc is kept for kept in self.kept):
                proc.stop(15)

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            proc.stop(15)


class Client:
    """requests against the real API, with a tenant's key."""

    def __init__(self, base_url: str, key: str | None) -> None:
        self.base = base_url
        self.session = requests.Session()
        if key:
            self.session.headers["Authorization"] = f"Bearer {key}"

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 60)
        return self.session.request(method, self.base + path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", path, **kwargs)

    def submit(self, text: str, analysis: str = "sentiment", **extra: Any) -> dict[str, Any]:
        response = self.post("/v1/jobs", json={"analysis": analysis, "input": {"text": text}, **extra})
        assert response.status_code == 202, response.text
        return response.json()

    def submit_batch(self, texts: list[str], analysis: str = "sentiment") -> list[dict[str, Any]]:
        body = {"jobs": [{"analysis": analysis, "input": {"text": t}} for t in texts]}
        response = self.post("/v1/jobs/batch", json=body)
        assert response.status_code == 202, response.text
        return response.json()["data"]


# --- issue 14: files a test leaves for people to look at (screenshots, terminal captures) ---
ARTIFACTS = ROOT / "var" / "test-artifacts"


def artifact(name: str) -> Path:
    """A path under var/test-artifacts/ (kept after the run, ignored by git) for a test's screenshot or capture."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / name
