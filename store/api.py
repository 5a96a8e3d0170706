"""The API's queries: create, read, list, cancel and erase jobs; list and redeliver webhook events.

Every function takes an open `Connection` inside a transaction; the caller decides how long it is held.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, RowMapping, case, func, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from store.erasure import ERASED_VALUES, delete_dependents
from store.ids import new_ordered_id
from store.result_cache import CachedResult
from store.tables import (
    JOB_DOCUMENT_COLUMNS,
    LIVE_STATUSES,
    EventStatus,
    JobStatus,
    job_blobs,
    jobs,
    webhook_attempts,
    webhook_events,
)


@dataclass(frozen=True)
class JobSpec:
    """One validated job to create."""

    analysis: str
    input: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)
    idempotency_key: str | None = None
    request_hash: str | None = None
    blob: bytes | None = None  # uploaded audio, stored in job_blobs
    webhook: dict[str, Any] | None = None  # {"url", "events"}
    blob_content_type: str = "application/octet-stream"
    options: dict[str, Any] | None = None  # {"return_embedding": true, ...}: only the options that are set
    use_cache: bool = True  # "options": {"cache": false} opts out
    # Decided at intake by app.result_cache, inside the creating transaction:
    job_id: str | None = None
    cache_key: str | None = None
    cached: CachedResult | None = None  # a hit: the job is created succeeded, with this result
    attach_to: str | None = None  # coalesced: the live job whose outcome this one takes

    def planned(self, **decided: Any) -> JobSpec:
        """A copy with intake's decisions (job_id, cache_key, cached, attach_to) set.

        `dataclasses.replace` runs `__init__` again for every field; on a 100-job batch that was 2 % of
        an API worker's time, for specs that were validated already."""
        if unknown := decided.keys() - {"job_id", "cache_key", "cached", "attach_to"}:
            raise TypeError(f"not intake's to decide: {sorted(unknown)}")
        copy = object.__new__(JobSpec)
        copy.__dict__.update(self.__dict__, **decided)
        return copy


class IdempotencyConflictError(Exception):
    """The Idempotency-Key was used before with a different request body."""


@dataclass(frozen=True)
class Created:
    rows: list[RowMapping]
    created: bool  # False: every job existed already under the same idempotency key and body


def create_jobs(conn: Connection, owner: str, specs: list[JobSpec], publish_epoch: str | None = None) -> Created:
    """Insert all jobs in one statement, or return the originals of an idempotent replay.

    `publish_epoch` is the broker epoch the caller will publish them under after commit.

    `ON CONFLICT DO NOTHING` makes two concurrent requests with one key safe: one inserts,
    the other sees the conflict and compares request hashes.
    """
    values = [_row(owner, spec) for spec in specs]
    keyed = any(spec.idempotency_key for spec in specs)
    # Rows go as executemany parameters (batched by SQLAlchemy's insertmanyvalues), so the
    # statement's compiled form is cached rather than rebuilt for every request.
    stmt = pg_insert(jobs).values(enqueued_at=func.now(), publish_epoch=publish_epoch)
    if keyed:
        stmt = stmt.on_conflict_do_nothing(
            index_elements=["owner", "idempotency_key"],
            index_where=jobs.c.idempotency_key.is_not(None),
        )
    inserted: dict[str, RowMapping] = {}
    for group in _same_columns(values):
        inserted.update({r["id"]: r for r in conn.execute(stmt.returning(*JOB_DOCUMENT_COLUMNS), group).mappings()})
    if len(inserted) == len(values):
        blobs = [
            {"job_id": v["id"], "data": spec.blob, "content_type": spec.blob_content_type}
            for v, spec in zip(values, specs, strict=True)
            if spec.blob is not None
        ]
        if blobs:
            conn.execute(job_blobs.insert(), blobs)
        return Created(rows=[inserted[v["id"]] for v in values], created=True)

    keys = [spec.idempotency_key for spec in specs]
    existing = {
        row["idempotency_key"]: row
        for row in conn.execute(
            select(*JOB_DOCUMENT_COLUMNS, jobs.c.idempotency_key, jobs.c.request_hash).where(
                jobs.c.owner == owner, jobs.c.idempotency_key.in_(keys)
            )
        ).mappings()
    }
    # An erased job's body hash went with its input (it would confirm a guessed input): whatever body
    # comes with its key, the answer is the bare record, so no body can be told from another.
    if inserted or any(
        spec.idempotency_key not in existing
        or (
            existing[spec.idempotency_key]["erased_at"] is None
            and existing[spec.idempotency_key]["request_hash"] != spec.request_hash
        )
        for spec in specs
    ):
        raise IdempotencyConflictError()
    return Created(rows=[existing[spec.idempotency_key] for spec in specs], created=False)


def idempotency_key_used(conn: Connection, owner: str, key: str) -> bool:
    """Whether a job of the tenant holds this Idempotency-Key (a batch's entries hold `key#index`)."""
    found = select(jobs.c.id).where(jobs.c.owner == owner, jobs.c.idempotency_key == key).limit(1)
    return conn.execute(found).first() is not None


def _same_columns(values: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Rows grouped by their keys: one executemany takes rows of one shape."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for value in values:
        groups.setdefault(tuple(value), []).append(value)
    return list(groups.values())


def _row(owner: str, spec: JobSpec) -> dict[str, Any]:
    """The row of a new job: queued, or (a cache hit) succeeded with the cached result and its times."""
    hit = spec.cached
    row: dict[str, Any] = {
        "id": spec.job_id or new_ordered_id("job"),
        "owner": owner,
        "analysis": spec.analysis,
        "input": spec.input,
        "metadata": spec.metadata,
        "idempotency_key": spec.idempotency_key,
        "request_hash": spec.request_hash,
        "webhook": spec.webhook,
        "options": spec.options,
        "cache_key": spec.cache_key if hit is None else None,
        "coalesced_into": spec.attach_to,
    }
    if hit is not None:  # only on hits: JSONB `result` takes None as JSON null, not SQL NULL
        row.update(
            status=JobStatus.SUCCEEDED,
            result={**hit.result, "cached": True},
            started_at=hit.started_at,
            completed_at=hit.completed_at,
        )
    return row


def get_job(conn: Connection, owner: str, job_id: str) -> RowMapping | None:
    return (
        conn.execute(select(*JOB_DOCUMENT_COLUMNS).where(jobs.c.id == job_id, jobs.c.owner == owner)).mappings().first()
    )


def list_jobs(
    conn: Connection,
    owner: str,
    *,
    limit: int,
    status: str | None = None,
    analysis: str | None = None,
    before: tuple[datetime, str] | None = None,
) -> list[RowMapping]:
    """Newest first; `before` is the (created_at, id) of the last row of the previous page."""
    query = select(*JOB_DOCUMENT_COLUMNS).where(jobs.c.owner == owner)
    if status:
        query = query.where(jobs.c.status == status)
    if analysis:
        query = query.where(jobs.c.analysis == analysis)
    if before:
        query = query.where(tuple_(jobs.c.created_at, jobs.c.id) < tuple_(*before))
    query = query.order_by(jobs.c.created_at.desc(), jobs.c.id.desc()).limit(limit)
    return list(conn.execute(query).mappings())


def _lock_status(conn: Connection, owner: str, job_id: str) -> str | None:
    """The tenant's job's status, its row locked until the transaction ends; None if there is no such job."""
    return (
        conn.execute(select(jobs.c.status).where(jobs.c.id == job_id, jobs.c.owner == owner).with_for_update())
        .scalars()
        .first()
    )


def _stopped_at() -> Any:
    """When a live job is canceled: now(), but never before it started. now() is the transaction's start, and a
    cancel may have begun before the worker's claim committed (it waited on the row's lock), which stamped a
    later started_at: the job answered completed_at < started_at. GREATEST skips a NULL started_at."""
    return func.greatest(func.now(), jobs.c.started_at)


def cancel_job(conn: Connection, owner: str, job_id: str) -> tuple[RowMapping, str] | None:
    """Cancel a queued or running job; returns (job, status before) or None if unknown.

    A running job is marked canceled at once: the model call in flight is not interrupted,
    but its result is discarded because the worker only writes over `running` rows.
    """
    before = _lock_status(conn, owner, job_id)
    if before is None:
        return None
    if before in LIVE_STATUSES:
        conn.execute(
            update(jobs)
            .where(jobs.c.id == job_id)
            .values(status=JobStatus.CANCELED, completed_at=_stopped_at(), lease_expires_at=None)
        )
    row = get_job(conn, owner, job_id)
    assert row is not None
    return row, before


def spooled_file(conn: Connection, owner: str, job_id: str) -> str | None:
    """The name of the call-record file the tenant's job's input names in the upload folder, if any."""
    return conn.execute(
        select(jobs.c.input["cdr"]["file"].astext).where(jobs.c.id == job_id, jobs.c.owner == owner)
    ).scalar_one_or_none()


def erase_job(conn: Connection, owner: str, job_id: str) -> tuple[RowMapping, str] | None:
    """Right to erasure; returns (the erased job, status before) or None if unknown.

    A job still queued or running is canceled in the same statement, so no worker can write a
    result afterwards (workers only write over `running` rows).
    """
    before = _lock_status(conn, owner, job_id)
    if before is None:
        return None
    live = jobs.c.status.in_(LIVE_STATUSES)
    conn.execute(
        update(jobs)
        .where(jobs.c.id == job_id)
        .values(
            **ERASED_VALUES,
            status=case((live, JobStatus.CANCELED), else_=jobs.c.status),
            completed_at=case((live, _stopped_at()), else_=jobs.c.completed_at),
            lease_expires_at=None,
        )
    )
    delete_dependents(conn, [job_id])
    row = get_job(conn, owner, job_id)
    assert row is not None
    return row, before


def events_for_job(conn: Connection, owner: str, job_id: str) -> list[tuple[RowMapping, list[RowMapping]]]:
    """A job's webhook events, oldest first, each with its attempts in attempt order (a late attempt, fenced
    out by a newer one, is logged when it ends, but listed where it began)."""
    events = list(
        conn.execute(
            select(webhook_events)
            .where(webhook_events.c.owner == owner, webhook_events.c.job_id == job_id)
            .order_by(webhook_events.c.created_at)
        ).mappings()
    )
    if not events:
        return []
    attempts = conn.execute(
        select(webhook_attempts)
        .where(webhook_attempts.c.event_id.in_([e["id"] for e in events]))
        .order_by(webhook_attempts.c.attempt, webhook_attempts.c.id)
    ).mappings()
    by_event: dict[str, list[RowMapping]] = {}
    for attempt in attempts:
        by_event.setdefault(attempt["event_id"], []).append(attempt)
    return [(event, by_event.get(event["id"], [])) for event in events]


def redeliver(conn: Connection, owner: str, event_id: str, publish_epoch: str | None) -> str | None:
    """Queue one more delivery of an event (same webhook-id); returns its status before, None if unknown.

    An event being delivered right now is left alone (its status before says so). The row is locked as it is
    read: a deliverer's claim committing between the read and the update was otherwise overwritten, its
    `delivering` event set back to `pending` under it (its attempt fenced out, the event sent twice at once).

    The job's row is share-locked first (jobs before events, the order erasure takes them): retention skips
    a job whose row is held, where it would otherwise erase it, and the event it had just made pending
    with it, from a snapshot in which the event had ended.
    """
    conn.execute(
        select(jobs.c.id)
        .join(webhook_events, webhook_events.c.job_id == jobs.c.id)
        .where(webhook_events.c.id == event_id, webhook_events.c.owner == owner)
        .with_for_update(read=True, of=jobs)
    )
    before = conn.execute(
        select(webhook_events.c.status)
        .where(webhook_events.c.id == event_id, webhook_events.c.owner == owner)
        .with_for_update()
    ).scalar_one_or_none()
    if before is None or before == EventStatus.DELIVERING:
        return before
    conn.execute(
        update(webhook_events)
        .where(webhook_events.c.id == event_id)
        .values(
            status=EventStatus.PENDING,
            next_attempt_at=func.now(),
            locked_until=None,
            publish_epoch=publish_epoch,
            published_at=func.now(),
        )
    )
    return before


def queued_jobs(conn: Connection, analyses: list[str]) -> int:
    """Jobs of these analyses waiting for a worker: the backlog admission weighs (partial index on queued)."""
    return int(
        conn.execute(
            select(func.count())
            .select_from(jobs)
            # an attached job (result cache) costs its workers nothing: it finishes with its source
            .where(jobs.c.status == "queued", jobs.c.analysis.in_(analyses), jobs.c.coalesced_into.is_(None))
        ).scalar_one()
    )
