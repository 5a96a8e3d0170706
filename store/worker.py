"""The inference worker's queries: claim a batch with a lease, load its audio, write its outcomes.

Claims and writes are guarded so that at-least-once delivery has exactly-once effects: a claim takes
only `queued` jobs, and a write lands only on a job still `running` in the same attempt.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, RowMapping, select, text

from store.tables import JOB_DOCUMENT_COLUMNS, JobStatus, job_blobs


@dataclass(frozen=True)
class ClaimedJob:
    id: str
    analysis: str
    input: dict[str, Any]
    attempt: int
    created_at: datetime | None = None
    started_at: datetime | None = None
    webhook: dict[str, Any] | None = None
    options: dict[str, Any] | None = None  # {"return_embedding": true, "return_diagnostics": true}
    tenant: str | None = None  # the owner: events go to its stream without a lookup after each commit


# Plain SQL with one array parameter: the Core construct with an expanding IN cost 0.7 ms a claim to build
# and run against 0.3 ms for this, on the path a lone job waits on.
_CLAIM_SQL = text(
    """
    UPDATE jobs SET status = :running, attempts = attempts + 1, started_at = now(),
           lease_expires_at = now() + make_interval(secs => :lease)
    WHERE id = ANY(:ids) AND status = :queued
    RETURNING id, analysis, input, attempts, created_at, started_at, webhook, options, owner
    """
)


def claim_jobs(conn: Connection, job_ids: list[str], lease_seconds: int) -> list[ClaimedJob]:
    """Mark queued jobs running with a lease and load their inputs: one statement for the batch.

    Jobs already running, finished or canceled are left out, which is what makes a duplicate
    delivery harmless.
    """
    params = {"ids": job_ids, "lease": lease_seconds, "running": JobStatus.RUNNING, "queued": JobStatus.QUEUED}
    rows = conn.execute(_CLAIM_SQL, params).mappings()
    order = {job_id: i for i, job_id in enumerate(job_ids)}
    claimed = [
        ClaimedJob(
            r["id"],
            r["analysis"],
            r["input"] or {},
            r["attempts"],
            r["created_at"],
            r["started_at"],
            r["webhook"],
            r["options"],
            r["owner"],
        )
        for r in rows
    ]
    return sorted(claimed, key=lambda job: order[job.id])


def load_blobs(conn: Connection, job_ids: list[str]) -> dict[str, bytes]:
    """The uploaded audio of a batch's jobs, in one query."""
    rows = conn.execute(select(job_blobs.c.job_id, job_blobs.c.data).where(job_blobs.c.job_id.in_(job_ids)))
    return {job_id: bytes(data) for job_id, data in rows}


@dataclass(frozen=True)
class Outcome:
    job_id: str
    attempt: int
    result: dict[str, Any] | None = None
    error_code: str | None = None
    error_message: str | None = None

    @property
    def status(self) -> JobStatus:
        return JobStatus.FAILED if self.error_code else JobStatus.SUCCEEDED


_FINISH_SQL = text(
    f"""
    UPDATE jobs SET status = v.status, result = v.result, error_code = v.error_code,
           error_message = v.error_message, completed_at = now(), lease_expires_at = NULL
    FROM jsonb_to_recordset(CAST(:rows AS jsonb))
         AS v(id text, attempt int, status text, result jsonb, error_code text, error_message text)
    WHERE jobs.id = v.id AND jobs.status = :running AND jobs.attempts = v.attempt
    RETURNING {", ".join(f"jobs.{column.name}" for column in JOB_DOCUMENT_COLUMNS)}
    """
)


def finish_jobs(conn: Connection, outcomes: list[Outcome]) -> dict[str, str]:
    """Write every outcome of a batch in one statement; returns {job_id: status} actually written."""
    return {job_id: row["status"] for job_id, row in write_outcomes(conn, outcomes).items()}


def write_outcomes(conn: Connection, outcomes: list[Outcome]) -> dict[str, RowMapping]:
    """Write every outcome of a batch in one statement; returns the document columns of each row written
    (the long-polls waiting on them are answered from these, without reading the rows again).

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
    rows = conn.execute(_FINISH_SQL, {"rows": payload, "running": JobStatus.RUNNING}).mappings()
    return {row["id"]: row for row in rows}


#: Rows another transaction holds (a cancel, an erasure, a frozen process until PostgreSQL ends its session)
#: are skipped, not waited for: waiting, the one statement ran into the statement timeout and every lease of
#: the batch went unrenewed, so the sweeper handed the whole batch to another worker. A skipped row keeps
#: its lease until the next renewal, and its holder is changing it anyway.
_RENEW_SQL = text(
    """
    UPDATE jobs SET lease_expires_at = now() + make_interval(secs => :lease)
    WHERE jobs.id IN (
        SELECT jobs.id FROM jobs
        JOIN unnest(CAST(:ids AS text[]), CAST(:attempts AS int[])) AS v(id, attempt)
            ON jobs.id = v.id AND jobs.attempts = v.attempt
        WHERE jobs.status = :running
        FOR UPDATE OF jobs SKIP LOCKED
    )
    """
)


def renew_leases(conn: Connection, held: dict[str, int], lease_seconds: float) -> int:
    """Extend the leases of the jobs this worker runs ({job_id: attempt}); one statement for all, past rows
    another transaction holds.

    Only a `running` row of the same attempt is renewed, so a worker can never keep alive a job
    the sweeper already gave to another.
    """
    if not held:
        return 0
    params = {"ids": list(held), "attempts": list(held.values()), "lease": lease_seconds, "running": JobStatus.RUNNING}
    return conn.execute(_RENEW_SQL, params).rowcount
