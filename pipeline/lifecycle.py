"""The one place that decides what follows a job's change of state.

Every path that moves jobs (the worker's claim and write, the sweeper, cancel and delete, redelivery,
intake) runs its statements in `Lifecycle.transaction()`. Inside, the unit writes what must be
atomic with the change (webhook outbox rows); after the transaction commits, and only then, the
side effects follow: long-polls are woken, job and webhook messages are published, metrics counted,
Flower told, a log line written. None of them raises into the caller: a message that cannot be
published is left for the sweeper, a notification that cannot be sent only makes a long-poll wait
for its deadline.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, NamedTuple

import redis
from redis.client import Pipeline
from sqlalchemy import Connection, Engine

from broker.job_events import JobEvent, add_events, record_events
from broker.job_pubsub import notify_finished
from broker.publish import Published, Publisher
from config import Settings
from contract.documents import iso_timestamp
from store.events import owners_of
from store.outbox import create_events, record_event_publish, record_job_publish
from store.result_cache import settle
from telemetry import metrics
from telemetry.flower import FlowerEvents

log = logging.getLogger(__name__)

#: After Redis timed out after a commit, the seconds during which the after-commit Redis work is skipped:
#: the sweepers publish what was not, long-polls answer at their deadline, streams catch up on the next GET.
BROKER_HUNG_SECONDS = 5.0


class Change(NamedTuple):
    """A job that changed state in this transaction, with what the side effects need to know.

    A NamedTuple, not a frozen dataclass: one is made per job on every claim, write and submission, and
    a frozen dataclass's `__init__` (an `object.__setattr__` per field) cost 2 µs against 0.6."""

    job_id: str
    analysis: str
    status: str
    attempt: int = 0
    created_at: datetime | None = None
    error_code: str | None = None
    runtime: float = 0.0  # seconds of model time, for Flower
    has_webhook: bool = True  # False spares the outbox lookup when the caller knows there is none
    cdr: tuple[int, int] | None = None  # a call-record job's (records read, callers flagged), for its metrics
    tenant: str | None = None  # for the tenant's event stream; looked up after commit when not given
    document: dict[str, Any] | None = None  # the final job document, when the write returned it: sent to long-polls


@dataclass
class Unit:
    """One transaction's connection, and the side effects it will have once it commits.

    `publish_epoch` is the broker epoch the process last published under: rows written here are
    stamped with it, and after commit the lifecycle fixes them only if the publish reports another.
    """

    conn: Connection
    settings: Settings
    publish_epoch: str | None
    created_jobs: list[Change] = field(default_factory=list)
    started_jobs: list[Change] = field(default_factory=list)
    finished_jobs: list[Change] = field(default_factory=list)
    jobs_to_publish: list[tuple[str, str]] = field(default_factory=list)
    events_to_publish: list[str] = field(default_factory=list)
    cache_outcomes: list[tuple[str, str]] = field(default_factory=list)  # (analysis, hit|miss|coalesced)

    def _outbox(self, changes: list[Change]) -> None:
        hooked = [c.job_id for c in changes if c.has_webhook]
        self.events_to_publish += create_events(self.conn, hooked, self.publish_epoch)

    def created(self, changes: list[Change]) -> None:
        """Jobs just accepted (queued): only the tenant's event stream hears of them."""
        self.created_jobs += changes

    def started(self, changes: list[Change]) -> None:
        """Jobs that began running: `job.started` events where asked for."""
        self._outbox(changes)
        self.started_jobs += changes

    def finished(self, changes: list[Change], *, settle_sources: bool = True) -> None:
        """Jobs that reached a final state: `job.succeeded|failed|canceled` events where asked for.

        A finished job may be the source others are attached to (store.result_cache): they finish
        with it here, in the same transaction, and follow the same path (each its own event);
        a canceled source's heir is published. Intake's cache hits pass `settle_sources=False`:
        they are never a source.
        """
        if settle_sources and changes:
            settled = settle(
                self.conn,
                [(c.job_id, c.status) for c in changes],
                remember=self.settings.cache_enabled,
                publish_epoch=self.publish_epoch,
            )
            changes = changes + [
                Change(
                    r["id"],
                    r["analysis"],
                    r["status"],
                    attempt=r["attempts"],
                    created_at=r["created_at"],
                    error_code=r["error_code"],
                    has_webhook=r["hooked"],
                )
                for r in settled.followers
            ]
            self.publish_jobs(settled.heirs)
        self._outbox(changes)
        self.finished_jobs += changes

    def cache_outcome(self, outcomes: list[tuple[str, str]]) -> None:
        """(analysis, hit|miss|coalesced) of intake's cache lookups, counted once the jobs are committed."""
        self.cache_outcomes += outcomes

    def publish_jobs(self, jobs: list[tuple[str, str]]) -> None:
        """(job_id, analysis) pairs, stamped with `publish_epoch`, to send once the rows are committed."""
        self.jobs_to_publish += jobs

    def publish_events(self, event_ids: list[str]) -> None:
        """Webhook events, stamped with `publish_epoch`, to send once committed (redelivery, due retries)."""
        self.events_to_publish += event_ids


class Lifecycle:
    """One per process: the after-commit side effects of every state change."""

    def __init__(
        self,
        settings: Settings,
        db: Engine,
        client: redis.Redis,
        publisher: Publisher,
        flower: FlowerEvents | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.redis = client
        self.publisher = publisher
        self.flower = flower  # set on inference workers, so Flower lists each job as a task
        self._broker_hung_until = 0.0  # Redis timed out after a commit: its side effects are skipped until then

    @contextmanager
    def transaction(self, epoch: str | None = None) -> Iterator[Unit]:
        """A transaction whose side effects run after it commits (and never if it rolls back).

        `epoch` overrides the epoch rows are stamped with (the sweeper reads the broker's own first).
        """
        with self.db.begin() as conn:
            unit = Unit(conn, self.settings, epoch or self.publisher.known_epoch)
            yield unit
        self.after_commit(unit)

    def after_commit(self, unit: Unit) -> None:
        """Wake long-polls, publish, count, tell Flower, log. Never raises."""
        finished = [(c.job_id, c.document) for c in unit.finished_jobs]
        if finished and not self._broker_hung() and notify_finished(self.redis, finished):
            self._broker_timed_out()
        events = self._job_events(unit)
        s = self.settings
        if unit.jobs_to_publish:  # the events ride in the publish's round trip, ahead of the messages
            add = partial(add_events, prefix=s.queue_prefix, window=s.events_window, keep_seconds=s.events_keep_seconds)
            self._publish_jobs(
                unit.jobs_to_publish, unit.publish_epoch, partial(add, events=events) if events else None
            )
        elif not self._broker_hung() and record_events(
            self.redis, s.queue_prefix, s.events_window, s.events_keep_seconds, events
        ):
            self._broker_timed_out()
        if unit.events_to_publish:
            self._publish_events(unit.events_to_publish, unit.publish_epoch)
        now = datetime.now(UTC)
        for change in unit.finished_jobs:
            metrics.JOBS_FINISHED.labels(change.analysis, change.status).inc()
            if change.cdr is not None:
                metrics.count_cdr(*change.cdr)
            if change.created_at:
                metrics.JOB_LATENCY.labels(change.analysis).observe((now - change.created_at).total_seconds())
            log.info(
                "job finished", extra={"job_id": change.job_id, "status": change.status, "attempt": change.attempt}
            )
        for (analysis, outcome), count in Counter(unit.cache_outcomes).items():  # a batch: one .labels() per kind
            metrics.CACHE_LOOKUPS.labels(analysis, outcome).inc(count)
        if self.flower is not None:
            for change in unit.started_jobs:
                self.flower.started(change.job_id, change.analysis, change.attempt)
            for change in unit.finished_jobs:
                self.flower.finished(change.job_id, change.status, change.runtime, change.error_code)
            self.flower.flush()  # the batch's events leave as one message

    def _broker_hung(self) -> bool:
        """A Redis operation after commit timed out less than BROKER_HUNG_SECONDS ago: skip the rest (each
        would wait out the same timeout; a frozen Redis made every submission pay one per side effect)."""
        return time.monotonic() < self._broker_hung_until

    def _broker_timed_out(self) -> None:
        self._broker_hung_until = time.monotonic() + BROKER_HUNG_SECONDS

    def _job_events(self, unit: Unit) -> list[JobEvent]:
        """Every change, for its tenant's event stream (GET /v1/events); owners the caller did not know are
        read in one query. Best effort, like the notifications: never raises."""
        changes = unit.created_jobs + unit.started_jobs + unit.finished_jobs
        if not changes:
            return []
        try:
            unknown = [c.job_id for c in changes if c.tenant is None]
            owners: dict[str, str] = {}
            if unknown:
                with self.db.connect() as conn:
                    owners = owners_of(conn, unknown)
            at = iso_timestamp(datetime.now(UTC))  # with a Z, like every timestamp the API writes
            return [
                JobEvent(tenant, c.job_id, c.analysis, str(c.status), at, c.error_code)
                for c in changes
                if (tenant := c.tenant or owners.get(c.job_id))
            ]
        except Exception:
            log.warning("job events not recorded", exc_info=True)
            return []

    def _publish_jobs(
        self, jobs: list[tuple[str, str]], stamped: str | None, before: Callable[[Pipeline], None] | None = None
    ) -> None:
        epoch = self._send(lambda: self.publisher.jobs(jobs, before=before), "jobs", len(jobs))
        if epoch != stamped:
            self._record(record_job_publish, [job_id for job_id, _ in jobs], epoch, "jobs")

    def _publish_events(self, event_ids: list[str], stamped: str | None) -> None:
        epoch = self._send(lambda: self.publisher.deliveries(event_ids), "events", len(event_ids))
        if epoch != stamped:
            self._record(record_event_publish, event_ids, epoch, "events")

    def _send(self, send: Callable[[], Published], what: str, count: int) -> str | None:
        """The epoch the messages went out under; None if they could not be sent (the sweeper will).

        After a Redis timeout here (a Redis that hangs without closing its sockets), none is tried for
        BROKER_HUNG_SECONDS: each would wait out the same timeout on the request path, and the sweeper sends
        them."""
        if self._broker_hung():
            return None
        try:
            return send().epoch
        except Exception as exc:
            if isinstance(exc, redis.TimeoutError):
                self._broker_timed_out()
            log.warning(f"{what} publish deferred to the sweeper", exc_info=True, extra={what: count})
            return None

    def _record(
        self, record: Callable[[Connection, list[str], str | None], None], ids: list[str], epoch: str | None, what: str
    ) -> None:
        """Correct rows stamped with another epoch than the publish used (or NULL when it failed)."""
        try:
            with self.db.begin() as conn:
                record(conn, ids, epoch)
        except Exception:  # the sweepers still find them: their epoch is not the broker's
            log.warning(f"could not record the epoch of published {what}", exc_info=True, extra={what: len(ids)})
