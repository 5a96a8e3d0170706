"""Writes the webhook worker's attempt records in the background, many attempts per statement.

Attempts end one by one, at the receivers' pace; writing each on its own would cost a transaction per
delivery. The recorder writes as soon as anything ended, everything that ended meanwhile (at most
`max_rows`) in one statement — group commit: busy receivers fill the statements by themselves, and no
linger widens the window in which a killed worker has delivered events it has not recorded (they are
re-sent: at least once). Records are fenced by attempt number (store.deliveries.record_attempts);
URLs that answered 410 are stopped. If PostgreSQL is away it keeps the records and tries again: the events
stay locked meanwhile, and should this process die first, their locks run out and the sweeper hands
them out again (at least once, never lost).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from store.db import unreachable
from store.deliveries import AttemptRecord, record_attempts, stop_url
from telemetry import metrics

log = logging.getLogger(__name__)

RETRY_SECONDS = 1.0


@dataclass(frozen=True)
class Ended:
    """An attempt record, with the tenant whose URL it was (to stop the URL on 410)."""

    owner: str
    record: AttemptRecord


class AttemptRecorder:
    """Thread- and greenlet-safe; its writer is a thread (a greenlet where gevent patched threading)."""

    def __init__(self, db: Engine, *, linger_seconds: float = 0.0, max_rows: int = 1000) -> None:
        self.db = db
        self.linger_seconds = linger_seconds
        self.max_rows = max_rows
        self._queue: queue.Queue[Ended] = queue.Queue()
        self._unwritten = 0
        self._lock = threading.Condition()
        self.totals: Counter[str] = Counter()
        threading.Thread(target=self._run, name="assay-attempt-recorder", daemon=True).start()

    def expect(self, count: int) -> None:
        """`count` events were handed out: `drain` waits for their records (or their `cancel`)."""
        with self._lock:
            self._unwritten += count

    def add(self, owner: str, record: AttemptRecord) -> None:
        """The record of an expected event."""
        self._queue.put(Ended(owner, record))

    def cancel(self, count: int) -> None:
        """Expected events that will bring no record (their attempt crashed)."""
        self._settle(count)

    def _settle(self, count: int) -> None:
        with self._lock:
            self._unwritten -= count
            self._lock.notify_all()

    def drain(self, timeout: float) -> bool:
        """Wait until every expected record is written; False if `timeout` passed first."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._unwritten:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(min(left, 0.05))
        return True

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            until = time.monotonic() + self.linger_seconds
            while len(batch) < self.max_rows:
                try:
                    left = until - time.monotonic()
                    batch.append(self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait())
                except queue.Empty:
                    break
            self._write_until_done(batch)
            self._settle(len(batch))

    def _write_until_done(self, batch: list[Ended]) -> None:
        """Write the batch, waiting out a database that is away; a statement PostgreSQL refuses is split in
        halves until the record it refuses is alone, and that one is dropped (its event is re-sent when its
        lock runs out: at least once). Retrying a refused batch as a whole stopped the recorder for good,
        every tenant's attempts behind one record with a value PostgreSQL does not take."""
        while True:
            try:
                self._write(batch)
                return
            except SQLAlchemyError as exc:
                # Only a statement PostgreSQL refused is split; anything else (an outage, a pool with no
                # connection free in time: SQLAlchemy's own TimeoutError) is waited out, as the whole batch.
                if isinstance(exc, DBAPIError) and not unreachable(exc):
                    self._write_halves(batch, exc)
                    return
                log.warning("attempt records not written; retrying", extra={"records": len(batch)}, exc_info=True)
                time.sleep(RETRY_SECONDS)
            except Exception:  # a bug must not stop the writer for good; these attempts are re-sent later
                log.exception("attempt records dropped", extra={"records": len(batch)})
                return

    def _write_halves(self, batch: list[Ended], refused: DBAPIError) -> None:
        if len(batch) == 1:
            log.error(
                "attempt record refused by the database; dropped (the event is sent again)",
                extra={"event_id": batch[0].record.id, "error": str(refused.orig or refused)[:300]},
            )
            return
        middle = len(batch) // 2
        self._write_until_done(batch[:middle])
        self._write_until_done(batch[middle:])

    def _write(self, batch: list[Ended]) -> None:
        records = [ended.record for ended in batch]
        with self.db.begin() as conn:
            written = record_attempts(conn, records)
            for owner, url in {(e.owner, e.record.url) for e in batch if e.record.outcome == "stopped"}:
                stop_url(conn, owner, url)
        outcomes = Counter(r.outcome for r in records)
        self.totals.update(outcomes)
        for outcome, count in outcomes.items():
            metrics.WEBHOOK_ATTEMPTS.labels(outcome).inc(count)
        for record in records:
            if record.outcome not in ("delivered", "deferred"):
                log.info(
                    "webhook attempt",
                    extra={
                        "event_id": record.id,
                        "attempt": record.attempt,
                        "status_code": record.status_code,
                        "outcome": record.outcome,
                        "latency_ms": record.latency_ms,
                        "error": record.error,
                    },
                )
        fenced = len(records) - len(written)
        quiet = fenced == 0 and set(outcomes) <= {"delivered"}
        log.log(
            logging.DEBUG if quiet else logging.INFO,
            "webhook records",
            extra={"records": len(records), **outcomes, "fenced": fenced},
        )
