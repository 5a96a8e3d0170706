"""Lease renewal: a job's lease is held only by a live worker.

A worker claims jobs with a lease (`ASSAY_LEASE_SECONDS`); this thread renews the leases of every
job the process is running, every third of the lease, in one statement. While the process lives the
sweeper never takes its jobs, however long a batch runs (long audio, a slow model); once it dies
the renewals stop and the leases run out. A job held longer than `ASSAY_MAX_RUN_SECONDS` is no
longer renewed, so a worker stuck in a model call cannot keep its jobs forever.
"""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy import Engine

from store.worker import renew_leases

log = logging.getLogger(__name__)


class LeaseKeeper:
    """Thread-safe: the batch loop holds jobs when it claims them and releases them once written."""

    def __init__(self, db: Engine, lease_seconds: float, max_run_seconds: float) -> None:
        self.db = db
        self.lease_seconds = lease_seconds
        self.max_run_seconds = max_run_seconds
        self.interval = max(0.2, lease_seconds / 3)
        self._held: dict[str, tuple[int, float]] = {}  # job id → (attempt, when claimed)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()

    def hold(self, jobs: dict[str, int]) -> None:
        """Start renewing these jobs' leases ({job_id: attempt})."""
        now = time.monotonic()
        with self._lock:
            self._held.update({job_id: (attempt, now) for job_id, attempt in jobs.items()})
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="assay-leases", daemon=True)
                self._thread.start()

    def release(self, job_ids: list[str]) -> None:
        with self._lock:
            for job_id in job_ids:
                self._held.pop(job_id, None)

    def renew_now(self) -> int:
        """One renewal of every job still within `max_run_seconds`; returns how many rows it extended."""
        cutoff = time.monotonic() - self.max_run_seconds
        with self._lock:
            due = {job_id: attempt for job_id, (attempt, since) in self._held.items() if since > cutoff}
        if not due:
            return 0
        with self.db.begin() as conn:
            return renew_leases(conn, due, self.lease_seconds)

    def _run(self) -> None:
        while not self._stopped.wait(self.interval):
            try:
                self.renew_now()
            except Exception:  # PostgreSQL away: try again next tick; the lease may run out meanwhile
                log.warning("lease renewal failed", exc_info=True)

    def stop(self) -> None:
        self._stopped.set()
