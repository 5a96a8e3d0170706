"""Job queries shared by the API (create, read, list, cancel, erase) and the workers (claim, finish, sweep).

Every function takes an open `Connection` inside a transaction: callers decide how long a
connection is held (the worker holds none while the model runs).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, RowMapping, case, delete, func, or_, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from store.ids import new_id
from store.tables import FINAL_STATUSES, job_blobs, jobs, webhook_events

JOB_COLUMNS = (
    jobs.c.id,
    jobs.c.owner,
    jobs.c.analysis,
    jobs.c.status,
    jobs.c.result,
    jobs.c.error_code,
    jobs.c.error_message,
    jobs.c.metadata,
    jobs.c.attempts,
    jobs.c.created_at,
    jobs.c.started_at,
    jobs.c.completed_at,
    jobs.c.erased_at,
)


def iso_timestamp(value: datetime | None) -> str | None:
    """RFC 3339 with a Z, as every timestamp in the API reads."""
    return value.isoformat().replace("+00:00", "Z") if value else None


def job_document(row: RowMapping) -> dict[str, Any]:
    """The job object, as the API returns it and webhooks carry it."""
    error = {"code": row["error_code"], "message": row["error_message"]} if row["error_code"] else None
    return {
        "id": row["id"],
        "object": "job",
        "analysis": row["analysis"],
        "status": row["status"],
        "created_at": iso_timestamp(row["created_at"]),
        "started_at": iso_timestamp(row["started_at"]),
        "completed_at": iso_timestamp(row["completed_at"]),
        "result": row["result"],
        "error": error,
        "metadata": row["metadata"],
        "attempts": row["attempts"],
        "erased_at": iso_timestamp(row["erased_at"]),
    }


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


class IdempotencyConflictError(Exception):
    """The Idempotency-Key was used before with a different request body."""


@dataclass(frozen=True)
class Created:
    rows: list[RowMapping]
    created: bool  # False: every job existed already under the same idempotency key and body


def create_jobs(conn: Connection, owner: str, specs: list[JobSpec]) -> Created:
    """Insert all jobs in one statement, or return the originals of an idempotent replay.

    `ON CONFLICT DO NOTHING` makes two concurrent requests with one key safe: one inserts,
    the other sees the conflict and compares request hashes.
    """
    values = [
        {
            "id": new_id("job"),
            "owner": owner,
            "analysis": spec.analysis,
            "input": spec.input,
            "metadata": spec.metadata,
            "idempotency_key": spec.idempotency_key,
            "request_hash": spec.request_hash,
            "webhook": spec.webhook,
        }
        for spec in specs
    ]
    keyed = any(spec.idempotency_key for spec in specs)
    # Rows go as executemany parameters (batched by SQLAlchemy's insertmanyvalues), so the
    # statement's compiled form is cached rather than rebuilt for every request.
    stmt = pg_insert(jobs).values(enqueued_at=func.now())
    if keyed:
        stmt = stmt.on_conflict_do_nothing(
            index_elements=["owner", "idempotency_key"],
            index_where=text("idempotency_key IS NOT NULL"),
        )
    inserted = {row["id"]: row for row in conn.execute(stmt.returning(*JOB_COLUMNS), values).mappings()}
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
            select(*JOB_COLUMNS, jobs.c.idempotency_key, jobs.c.request_hash).where(
                jobs.c.owner == owner, jobs.c.idempotency_key.in_(keys)
            )
        ).mappings()
    }
    if inserted or any(
        spec.idempotency_key not in existing or existing[spec.idempotency_key]["request_hash"] != spec.request_hash
        for spec in specs
    ):
        raise IdempotencyConflictError()
    return Created(rows=[existing[spec.idempotency_key] for spec in specs], created=False)


def get_job(conn: Connection, owner: str, job_id: str) -> RowMapping | None:
    return conn.execute(select(*JOB_COLUMNS).where(jobs.c.id == job_id, jobs.c.owner == owner)).mappings().first()


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
    query = select(*JOB_COLUMNS).where(jobs.c.owner == owner)
    if status:
        query = query.where(jobs.c.status == status)
    if analysis:
        query = query.where(jobs.c.analysis == analysis)
    if before:
        query = query.where(tuple_(jobs.c.created_at, jobs.c.id) < tuple_(*before))
    query = query.order_by(jobs.c.created_at.desc(), jobs.c.id.desc()).limit(limit)
    return list(conn.execute(query).mappings())


def cancel_job(conn: Connection, owner: str, job_id: str) -> tuple[RowMapping, str] | None:
    """Cancel a queued or running job; returns (job, status before) or None if unknown.

    A running job is marked canceled at once: the model call in flight is not interrupted,
    but its result is discarded because the worker only writes over `running` rows.
    """
    before = (
        conn.execute(select(jobs.c.status).where(jobs.c.id == job_id, jobs.c.owner == owner).with_for_update())
        .scalars()
        .first()
    )
    if before is None:
        return None
    if before in ("queued", "running"):
        conn.execute(
            update(jobs)
            .where(jobs.c.id == job_id)
            .values(status="canceled", completed_at=func.now(), lease_expires_at=None)
        )
    row = get_job(conn, owner, job_id)
    assert row is not None
    return row, before


def erase_job(conn: Connection, owner: str, job_id: str) -> RowMapping | None:
    """Right to erasure: drop input, result, error message and metadata; keep the bare record.

    A job still queued or running is canceled in the same statement, so no worker can write a
    result afterwards (workers only write over `running` rows).
    """
    live = jobs.c.status.in_(("queued", "running"))
    erased = conn.execute(
        update(jobs)
        .where(jobs.c.id == job_id, jobs.c.owner == owner)
        .values(
            input=None,
            result=None,
            error_message=None,
            metadata={},
            erased_at=func.coalesce(jobs.c.erased_at, func.now()),
            status=case((live, "canceled"), else_=jobs.c.status),
            completed_at=case((live, func.now()), else_=jobs.c.completed_at),
            lease_expires_at=None,
        )
        .returning(jobs.c.id)
    ).first()
    if erased is None:
        return None
    conn.execute(delete(job_blobs).where(job_blobs.c.job_id == job_id))
    conn.execute(delete(webhook_events).where(webhook_events.c.job_id == job_id))  # their payloads hold results
    return get_job(conn, owner, job_id)


def expire_jobs(conn: Connection, older_than_seconds: float, limit: int) -> list[str]:
    """Retention: erase finished jobs completed longer ago than the retention period, a chunk at a time.

    Same erasure as DELETE /v1/jobs/{id} (input, result, error message, metadata, audio, webhook
    payloads); the bare record stays for accounting.
    """
    due = (
        select(jobs.c.id)
        .where(
            jobs.c.erased_at.is_(None),
            jobs.c.status.in_(FINAL_STATUSES),
            jobs.c.completed_at < func.now() - func.make_interval(0, 0, 0, 0, 0, 0, older_than_seconds),
        )
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    ids = list(
        conn.execute(
            update(jobs)
            .where(jobs.c.id.in_(due))
            .values(input=None, result=None, error_message=None, metadata={}, erased_at=func.now())
            .returning(jobs.c.id)
        ).scalars()
    )
    if ids:
        conn.execute(delete(job_blobs).where(job_blobs.c.job_id.in_(ids)))
        conn.execute(delete(webhook_events).where(webhook_events.c.job_id.in_(ids)))
    return ids


def load_blobs(conn: Connection, job_ids: list[str]) -> dict[str, bytes]:
    """The uploaded audio of a batch's jobs, in one query."""
    rows = conn.execute(select(job_blobs.c.job_id, job_blobs.c.data).where(job_blobs.c.job_id.in_(job_ids)))
    return {job_id: bytes(data) for job_id, data in rows}


def mark_not_enqueued(conn: Connection, job_ids: list[str]) -> None:
    """Publishing failed after commit: clear `enqueued_at` so the next sweep publishes them."""
    conn.execute(update(jobs).where(jobs.c.id.in_(job_ids), jobs.c.status == "queued").values(enqueued_at=None))


# --- worker side -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ClaimedJob:
    id: str
    analysis: str
    input: dict[str, Any]
    attempt: int
    created_at: datetime | None = None
    started_at: datetime | None = None
    webhook: dict[str, Any] | None = None


def claim_jobs(conn: Connection, job_ids: list[str], lease_seconds: int) -> list[ClaimedJob]:
    """Mark queued jobs running with a lease and load their inputs: one statement for the batch.

    Jobs already running, finished or canceled are left out, which is what makes a duplicate
    delivery harmless.
    """
    rows = conn.execute(
        update(jobs)
        .where(jobs.c.id.in_(job_ids), jobs.c.status == "queued")
        .values(
            status="running",
            attempts=jobs.c.attempts + 1,
            started_at=func.now(),
            lease_expires_at=func.now() + func.make_interval(0, 0, 0, 0, 0, 0, lease_seconds),
        )
        .returning(
            jobs.c.id,
            jobs.c.analysis,
            jobs.c.input,
            jobs.c.attempts,
            jobs.c.created_at,
            jobs.c.started_at,
            jobs.c.webhook,
        )
    ).mappings()
    order = {job_id: i for i, job_id in enumerate(job_ids)}
    claimed = [
        ClaimedJob(
            r["id"], r["analysis"], r["input"] or {}, r["attempts"], r["created_at"], r["started_at"], r["webhook"]
        )
        for r in rows
    ]
    return sorted(claimed, key=lambda job: order[job.id])


@dataclass(frozen=True)
class Outcome:
    job_id: str
    attempt: int
    result: dict[str, Any] | None = None
    error_code: str | None = None
    error_message: str | None = None

    @property
    def status(self) -> str:
        return "failed" if self.error_code else "succeeded"


_FINISH_SQL = text(
    """
    UPDATE jobs SET status = v.status, result = v.result, error_code = v.error_code,
           error_message = v.error_message, completed_at = now(), lease_expires_at = NULL
    FROM jsonb_to_recordset(CAST(:rows AS jsonb))
         AS v(id text, attempt int, status text, result jsonb, error_code text, error_message text)
    WHERE jobs.id = v.id AND jobs.status = 'running' AND jobs.attempts = v.attempt
    RETURNING jobs.id, jobs.status
    """
)


def finish_jobs(conn: Connection, outcomes: list[Outcome]) -> dict[str, str]:
    """Write every outcome of a batch in one statement; returns {job_id: status} actually written.

    Only a `running` row of the same attempt is written: a finished or canceled job is never
    overwritten, and a worker whose lease was taken over cannot clobber the newer attempt.
    """
    if not outcomes:
        return {}
    payload = json.dumps(
        [
            {
                "id": o.job_id,
                "attempt": o.attempt,
                "status": o.status,
                "result": o.result,
                "error_code": o.error_code,
                "error_message": o.error_message,
            }
            for o in outcomes
        ]
    )
    return {row.id: row.status for row in conn.execute(_FINISH_SQL, {"rows": payload})}


# --- sweeper --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepResult:
    republish: list[tuple[str, str]]  # (job_id, analysis)
    exhausted: list[tuple[str, str]]


def sweep(conn: Connection, *, requeue_after_seconds: int, max_attempts: int, limit: int) -> SweepResult:
    """Find jobs whose message was lost or whose worker died, and decide their fate.

    - `queued` and not published for `requeue_after_seconds` (or never): publish again.
    - `running` past the lease: back to `queued` and publish, or fail with
      `attempts_exhausted` once `max_attempts` runs have started.
    `SKIP LOCKED` lets two sweepers run side by side without taking the same rows.
    """
    stale = func.now() - func.make_interval(0, 0, 0, 0, 0, 0, requeue_after_seconds)
    lost = (
        select(jobs.c.id)
        .where(jobs.c.status == "queued", or_(jobs.c.enqueued_at.is_(None), jobs.c.enqueued_at < stale))
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    republish = [
        (r.id, r.analysis)
        for r in conn.execute(
            update(jobs).where(jobs.c.id.in_(lost)).values(enqueued_at=func.now()).returning(jobs.c.id, jobs.c.analysis)
        )
    ]

    expired = (
        select(jobs.c.id)
        .where(jobs.c.status == "running", jobs.c.lease_expires_at < func.now())
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    exhausted = [
        (r.id, r.analysis)
        for r in conn.execute(
            update(jobs)
            .where(jobs.c.id.in_(expired), jobs.c.attempts >= max_attempts)
            .values(
                status="failed",
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
        .values(status="queued", lease_expires_at=None, enqueued_at=func.now())
        .returning(jobs.c.id, jobs.c.analysis)
    )
    republish.extend((r.id, r.analysis) for r in requeued)
    return SweepResult(republish=republish, exhausted=exhausted)


def counts_by_status(conn: Connection) -> dict[str, int]:
    rows = conn.execute(select(jobs.c.status, func.count()).group_by(jobs.c.status))
    return {status: count for status, count in rows}


__all__ = [
    "FINAL_STATUSES",
    "ClaimedJob",
    "Created",
    "IdempotencyConflictError",
    "JobSpec",
    "Outcome",
    "SweepResult",
    "cancel_job",
    "claim_jobs",
    "counts_by_status",
    "create_jobs",
    "erase_job",
    "expire_jobs",
    "finish_jobs",
    "get_job",
    "list_jobs",
    "load_blobs",
    "mark_not_enqueued",
    "sweep",
]
