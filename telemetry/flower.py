"""Per-job Celery task events, so Flower lists every job as a task with its state.

celery-batches runs one task call for a whole batch and sends no per-message events, so
the worker sends them itself, one `uuid` per job: received and started when a batch claims
the job, succeeded or failed when its result is written. They are buffered and sent as one
`task.multi` message per batch (Celery's own event grouping, which Flower's receiver unpacks), not
three broker messages per job; `ASSAY_FLOWER_TASK_EVENTS=false` turns them off for deployments that
watch Prometheus instead (Flower then shows workers and queues, but no per-job tasks).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from celery import Celery

from config.celeryconf import ANALYZE_TASK

log = logging.getLogger(__name__)

BUFFER_LIMIT = 4096  # events held before a send even without flush(); a batch flushes long before


class FlowerEvents:
    """Best effort and thread-safe: the worker's claim and its writer thread both report."""

    def __init__(self, app: Celery, hostname: str) -> None:
        self._app = app
        self._hostname = hostname
        self._dispatcher: Any = None
        self._lock = threading.Lock()

    def _send(self, type_: str, **fields: Any) -> None:
        """Monitoring must never fail a batch: errors are logged and the connection dropped."""
        with self._lock:
            try:
                if self._dispatcher is None:
                    self._dispatcher = self._app.events.Dispatcher(
                        self._app.connection_for_write(),
                        hostname=self._hostname,
                        enabled=True,
                        buffer_group=frozenset({"task"}),
                        buffer_limit=BUFFER_LIMIT,
                    )
                self._dispatcher.send(type_, **fields)
            except Exception:
                log.warning("task event not sent", exc_info=True, extra={"type": type_})
                self._close()

    def started(self, job_id: str, analysis: str, attempt: int) -> None:
        now = time.time()
        self._send(
            "task-received",
            uuid=job_id,
            name=ANALYZE_TASK,
            args=repr([job_id]),
            kwargs=repr({"analysis": analysis}),
            retries=attempt - 1,
            eta=None,
            expires=None,
            root_id=job_id,
            parent_id=None,
            timestamp=now,
        )
        self._send("task-started", uuid=job_id, timestamp=now)

    def finished(self, job_id: str, status: str, runtime: float, error: str | None = None) -> None:
        if status == "succeeded":
            self._send("task-succeeded", uuid=job_id, result=repr(status), runtime=runtime)
        else:
            self._send("task-failed", uuid=job_id, exception=error or status, traceback=None)

    def flush(self) -> None:
        """Send what the batch buffered, as one message."""
        with self._lock:
            if self._dispatcher is None:
                return
            try:
                self._dispatcher.flush()
            except Exception:
                log.warning("task events not sent", exc_info=True)
                self._close()

    def _close(self) -> None:
        if self._dispatcher is not None:
            dispatcher, self._dispatcher = self._dispatcher, None
            try:
                dispatcher.close()
            except Exception:
                log.debug("closing the event dispatcher failed", exc_info=True)

    def close(self) -> None:
        with self._lock:
            self._close()
