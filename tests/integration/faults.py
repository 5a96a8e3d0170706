"""Helpers for fault tests: private PostgreSQL/Redis servers a test may kill, and clients that keep submitting."""

from __future__ import annotations

import contextlib
import secrets
import shutil
import tempfile
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import requests

from deploy.local.services import LocalPostgres, _service_user, ensure_database, postgres_bindir
from store.migrate import upgrade
from tests.support import free_port


@dataclass
class PrivatePostgres:
    server: LocalPostgres
    url: str


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """A PostgreSQL server of the test's own, migrated, that the test may stop and start."""
    bindir = postgres_bindir()
    assert bindir is not None, "PostgreSQL binaries are needed (make test installs them where missing)"
    datadir = Path(tempfile.mkdtemp(prefix="assay-pgtest-", dir="/tmp"))
    server = LocalPostgres(bindir, datadir, free_port(), _service_user())
    url = server.start()
    try:
        ensure_database(url)
        from config.settings import load_settings

        upgrade(load_settings(database_url=url))
        yield PrivatePostgres(server, url)
    finally:
        server.stop("immediate")
        shutil.rmtree(datadir, ignore_errors=True)


@dataclass
class Load:
    """Client threads submitting single jobs as fast as the API answers, until stopped.

    Every answer is recorded by status (a connection error as 0): a fault test asserts that none was
    a 500 and that every 202 job finishes.
    """

    url: str
    key: str
    threads: int = 4
    analysis: str = "sentiment"
    statuses: Counter[int] = field(default_factory=Counter)
    accepted: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _run(self, n: int) -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {self.key}"
        i = 0
        while not self._stop.is_set():
            i += 1
            body = {
                "analysis": self.analysis,
                "input": {"text": f"client {n} message {i}: it works {secrets.token_hex(2)}"},
            }
            try:
                response = session.post(f"{self.url}/v1/jobs", json=body, timeout=30)
                status = response.status_code
            except requests.RequestException:
                status = 0
            with self._lock:
                self.statuses[status] += 1
                if status == 202:
                    self.accepted.append(response.json()["id"])
            if status != 202:
                self._stop.wait(0.05)

    def start(self) -> Load:
        self._workers = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(self.threads)]
        for worker in self._workers:
            worker.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(60)
