"""What the job event stream needs from PostgreSQL: whose jobs changed (the worker's claim does not say)."""

from __future__ import annotations

from sqlalchemy import Connection, select

from store.tables import jobs


def owners_of(conn: Connection, job_ids: list[str]) -> dict[str, str]:
    """job id → tenant id, in one primary-key lookup."""
    if not job_ids:
        return {}
    rows = conn.execute(select(jobs.c.id, jobs.c.owner).where(jobs.c.id.in_(job_ids))).all()
    return {job_id: owner for job_id, owner in rows}
