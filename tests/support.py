"""Real processes for integration tests: gunicorn, Celery workers, Flower; plus a small HTTP client."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


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


@dataclass
class Proc:
    """A child process with its output in a log file."""

    name: str
    argv: list[str]
    env: dict[str, str]
    logfile: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        handle = self.logfile.open("ab")
        self.popen = subprocess.Popen(
            self.argv, env=self.env, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log_text(self) -> str:
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

    def kill(self) -> None:
        """SIGKILL the whole process group: no clean-up, no acknowledgements."""
        if self.alive():
            os.killpg(self.pid, signal.SIGKILL)
            assert self.popen is not None
            self.popen.wait(10)

    def stop(self, timeout: float = 15) -> None:
        if not self.alive():
            return
        os.killpg(self.pid, signal.SIGTERM)
        assert self.popen is not None
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()


@dataclass
class Stack:
    """Starts and stops the service's processes for one test session."""

    env: dict[str, str]
    logdir: Path
    queue_prefix: str
    procs: list[Proc] = field(default_factory=list)
    _count: int = 0

    def _proc(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Proc:
        self._count += 1
        proc = Proc(name, argv, {**self.env, **(env or {})}, self.logdir / f"{self._count:02d}-{name}.log")
        self.procs.append(proc)
        return proc.start()

    def api(self, **env: str) -> tuple[Proc, str]:
        port = free_port()
        proc = self._proc(
            "api",
            [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "app.wsgi:app"],
            {"ASSAY_API_BIND": f"127.0.0.1:{port}", "ASSAY_API_WORKERS": "2", **env},
        )
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
        prefix = env.get("ASSAY_QUEUE_PREFIX", self.queue_prefix)
        queues = ",".join(f"{prefix}.{f}" for f in families)
        proc = self._proc(
            f"worker-{name}",
            [str(BIN / "celery"), "-A", "workers.celery_app", "worker", "-P", "solo", "-c", "1", "-Q", queues,
             "-n", f"{name}@%h", "-E", "--without-gossip", "--without-mingle", "-l", "INFO"],
            env,
        )  # fmt: skip

        def ready() -> bool:
            assert proc.alive(), proc.log_text()[-3000:]
            return bool(proc.log_events("worker ready"))

        wait_for(ready, 120, interval=0.2, what=f"worker {name} ready")
        return proc

    def sweeper(self, **env: str) -> Proc:
        """The maintenance worker with the beat scheduler embedded: runs the sweep periodically."""
        proc = self._proc(
            "sweeper",
            [str(BIN / "celery"), "-A", "workers.celery_app", "worker", "-P", "threads", "-c", "2",
             "-Q", f"{env.get('ASSAY_QUEUE_PREFIX', self.queue_prefix)}.maintenance", "-n", "maintenance@%h", "-B",
             "-s", str(self.logdir / "beat-schedule"), "--without-gossip", "--without-mingle", "-l", "INFO"],
            env,
        )  # fmt: skip
        wait_for(lambda: "ready." in proc.log_text() or not proc.alive(), 60, what="sweeper ready")
        assert proc.alive(), proc.log_text()[-3000:]
        return proc

    def webhooks(self, **env: str) -> Proc:
        """The webhook delivery worker: its own queue, a gevent pool, no models."""
        prefix = env.get("ASSAY_QUEUE_PREFIX", self.queue_prefix)
        proc = self._proc(
            "webhooks",
            [str(BIN / "celery"), "-A", "workers.celery_app", "worker", "-P", "gevent", "-c", "50",
             "-Q", f"{prefix}.webhooks", "-n", f"webhooks-{prefix}@%h", "--without-gossip", "--without-mingle",
             "-l", "INFO"],
            env,
        )  # fmt: skip
        wait_for(lambda: "ready." in proc.log_text() or not proc.alive(), 60, what="webhook worker ready")
        assert proc.alive(), proc.log_text()[-3000:]
        return proc

    def flower(self, port: int, user: str, password: str) -> Proc:
        return self._proc(
            "flower",
            [str(BIN / "celery"), "-A", "workers.celery_app", "flower", f"--port={port}", "--address=127.0.0.1",
             f"--basic-auth={user}:{password}"],
        )  # fmt: skip

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


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
