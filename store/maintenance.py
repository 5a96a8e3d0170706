"""The maintenance worker's queries: recover lost or abandoned jobs, expire old ones, find due webhook events.

PostgreSQL is the source of truth; broker messages are only hints. `SKIP LOCKED` lets two
maintenance workers run side by side without taking the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select, update

from store.db import interval
from store.erasure import ERASED_VALUES, delete_dependents
from store.tables import FINAL_STATUSES, EventStatus, JobStatus, jobs, webhook_events


def _pick(column: Any, *where: Any, limit: int, order_by: Any = None) -> Any:
    """Up to `limit` ids matching `where`, locked and skipping rows another sweeper holds."""
    picked = select(column).where(*where)
    if order_by is not None:
        picked = picked.order_by(order_by)
    return picked.limit(limit).with_for_update(skip_locked=True).scalar_subquery()


#: A publish that stamped its rows with an old epoch fixes them right after it returns: give it this long.
PUBLISH_SETTLE_SECONDS = 2.0


@dataclass(frozen=True)
class Drained:
    """What the broker holds for one model family, as the sweeper read it just before sweeping."""

    analyses: list[str]  # the family's analyses
    held: set[str]  # ids in messages a worker took and has not acked


@dataclass(frozen=True)
class SweepResult:
    republish: list[tuple[str, str]]  # (job_id, analysis)
    exhausted: list[tuple[str, str]]


def sweep(
    conn: Connection,
    *,
    epoch: str | None,
    drained: list[Drained],
    requeue_after_seconds: int,
    max_attempts: int,
    limit: int,
) -> SweepResult:
    """Find jobs whose message was lost or whose worker died, and decide their fate.

    Re-published (stamped with `epoch`, the broker's epoch now):
    - `queued` jobs published under another epoch, or never: their message died with that epoch;
    - `queued` jobs published under this epoch longer than `requeue_after_seconds` ago, only for a
      family whose queue is empty (`drained`) and only if no worker holds their message: the
      message must have been lost otherwise (an API worker killed between commit and publish);
    - `running` jobs past their lease (its worker stopped renewing it: it is gone) go back to
      `queued`, or fail with `attempts_exhausted` once `max_attempts` runs have started.
    With `epoch` None (the broker is unreachable) nothing is published; requeued jobs are left
    unpublished for the next sweep.
    """
    republish: list[tuple[str, str]] = []
    if epoch is not None:
        settled = func.now() - interval(PUBLISH_SETTLE_SECONDS)
        lost = jobs.c.publish_epoch.is_distinct_from(epoch) & (jobs.c.enqueued_at < settled)
        stale = func.now() - interval(requeue_after_seconds)
        strays = [
            (jobs.c.publish_epoch == epoch)
            & (jobs.c.enqueued_at < stale)
            & jobs.c.analysis.in_(family.analyses)
            & ~jobs.c.id.in_(family.held or [""])
            for family in drained
        ]
        # An attached job (coalesced_into set) has no message of its own: it finishes with its source.
        picked = _pick(
            jobs.c.id,
            jobs.c.status == JobStatus.QUEUED,
            jobs.c.coalesced_into.is_(None),
            or_(lost, *strays),
            limit=limit,
        )
        republish = [
            (r.id, r.analysis)
            for r in conn.execute(
                update(jobs)
                .where(jobs.c.id.in_(picked))
                .values(enqueued_at=func.now(), publish_epoch=epoch)
                .returning(jobs.c.id, jobs.c.analysis)
            )
        ]

    expired = _pick(jobs.c.id, jobs.c.status == JobStatus.RUNNING, jobs.c.lease_expires_at < func.now(), limit=limit)
    exhausted = [
        (r.id, r.analysis)
        for r in conn.execute(
            update(jobs)
            .where(jobs.c.id.in_(expired), jobs.c.attempts >= max_attempts)
            .values(
                status=JobStatus.FAILED,
                error_code="attempts_exhausted",
                error_message=f"the job's worker stopped before finishing it {max_attempts} times",
                completed_at=func.now(),
                lease_expires_at=None,
            )
            .returning(jobs.c.id, jobs.c.analysis)
        )
    ]
    requeued = conn.execute(
        update(jobs)
        .where(jobs.c.id.in_(expired), jobs.c.attempts < max_attempts)
        .values(status=JobStatus.QUEUED, lease_expires_at=None, enqueued_at=func.now(), publish_epoch=epoch)
        .returning(jobs.c.id, jobs.c.analysis)
    )
    if epoch is not None:
        republish.extend((r.id, r.analysis) for r in requeued)
    return SweepResult(republish=republish, exhausted=exhausted)


def expire_jobs(conn: Connection, older_than_seconds: float, limit: int) -> list[str]:
    """Retention: erase finished jobs completed longer ago than the retention period, a chunk at a time.

    The same erasure as DELETE /v1/jobs/{id} (store.erasure); the bare record stays for accounting.
    A job whose webhook events are still pending or being delivered waits for them to end (delivered,
    failed or stopped): erasure deletes its events, and a receiver down for longer than the retention
    period (the default schedule retries for ~27.6 h, a Retry-After may ask for a day) would never get them.
    """
    undelivered = (
        select(webhook_events.c.id)
        .where(
            webhook_events.c.job_id == jobs.c.id,
            webhook_events.c.status.in_([EventStatus.PENDING, EventStatus.DELIVERING]),
        )
        .exists()
    )
    due = [
        jobs.c.erased_at.is_(None),
        jobs.c.status.in_(FINAL_STATUSES),
        jobs.c.completed_at < func.now() - interval(older_than_seconds),
        ~undelivered,
    ]
    # Oldest first, which is also what keeps the plan on ix_jobs_retention: without an order, at 10 M rows
    # with 3 % due the planner expected 1,000 due rows early in a sequential scan (138 ms; bench/scale.py).
    picked = list(
        conn.execute(
            select(jobs.c.id).where(*due).order_by(jobs.c.completed_at).limit(limit).with_for_update(skip_locked=True)
        ).scalars()
    )
    if not picked:
        return []
    # Two statements, so the erasure asks about the events again with a snapshot taken once the rows are
    # locked: in one, a redelivery (which holds the job's row) committing between the statement's start
    # and its lock on the row went unseen, and the event it had just made pending was erased.
    ids = list(
        conn.execute(
            update(jobs).where(jobs.c.id.in_(picked), *due).values(**ERASED_VALUES).returning(jobs.c.id)
        ).scalars()
    )
    delete_dependents(conn, ids)
    return ids


def due_events(
    conn: Connection,
    *,
    epoch: str,
    drained: bool,
    held: set[str],
    publish_grace_seconds: float,
    limit: int = 1000,
) -> list[str]:
    """Webhook events to (re)publish now, stamped with `epoch`; the same rules as for jobs.

    - pending, due, and no message for them in the broker: a retry whose time has come
      (`publish_epoch` NULL), or a message that died with an older epoch;
    - pending under this epoch longer than the grace, while the webhook queue is drained and no
      worker holds the message: lost on the way;
    - delivering past the attempt's deadline: its deliverer died.
    """
    now = func.now()
    settled = now - interval(PUBLISH_SETTLE_SECONDS)
    events = webhook_events.c
    unpublished = events.publish_epoch.is_(None) | (
        events.publish_epoch.is_distinct_from(epoch) & (events.published_at < settled)
    )
    conditions = [and_(events.status == EventStatus.PENDING, events.next_attempt_at <= now, unpublished)]
    if drained:
        conditions.append(
            and_(
                events.status == EventStatus.PENDING,
                events.publish_epoch == epoch,
                events.published_at < now - interval(publish_grace_seconds),
                ~events.id.in_(held or [""]),
            )
        )
    conditions.append(and_(events.status == EventStatus.DELIVERING, events.locked_until < now))
    picked = _pick(events.id, or_(*conditions), limit=limit)
    return list(
        conn.execute(
            update(webhook_events)
            .where(events.id.in_(picked))
            .values(status=EventStatus.PENDING, locked_until=None, publish_epoch=epoch, published_at=now)
            .returning(events.id)
        ).scalars()
    )


def live_upload_names(conn: Connection) -> set[str]:
    """Spooled call-record files that queued or running jobs still need (both statuses are indexed)."""
    name = jobs.c.input["cdr"]["file"].astext
    rows = conn.execute(select(name).where(jobs.c.status.in_([JobStatus.QUEUED, JobStatus.RUNNING]), name.is_not(None)))
    return {row[0] for row in rows}
