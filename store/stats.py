"""A tenant's live job counts for the console; small indexed queries (live rows, one recent minute)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, func, select

from store.tables import FINAL_STATUSES, JobStatus, jobs


@dataclass(frozen=True)
class TenantCounts:
    queued: int
    running: int
    finished: int  # reached a final state in the window
    failed: int


def tenant_counts(conn: Connection, tenant: str, window_seconds: int) -> TenantCounts:
    live = dict(
        conn.execute(
            select(jobs.c.status, func.count())
            .where(jobs.c.owner == tenant, jobs.c.status.in_([JobStatus.QUEUED, JobStatus.RUNNING]))
            .group_by(jobs.c.status)
        ).all()
    )
    since = datetime.now(UTC) - timedelta(seconds=window_seconds)
    done = dict(
        conn.execute(
            select(jobs.c.status, func.count())
            .where(
                jobs.c.owner == tenant,
                jobs.c.status.in_(FINAL_STATUSES),
                jobs.c.completed_at >= since,
                jobs.c.created_at >= since - timedelta(days=1),  # keeps the scan on ix_jobs_owner_created
            )
            .group_by(jobs.c.status)
        ).all()
    )
    return TenantCounts(
        queued=live.get(JobStatus.QUEUED, 0),
        running=live.get(JobStatus.RUNNING, 0),
        finished=sum(done.values()),
        failed=done.get(JobStatus.FAILED, 0),
    )
