"""Database-side waits shared by the integration tests."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import Engine, select

from store.tables import jobs
from tests.support import wait_for

FINAL = ("succeeded", "failed", "canceled")


def statuses(db: Engine, ids: list[str]) -> dict[str, str]:
    with db.connect() as conn:
        return dict(conn.execute(select(jobs.c.id, jobs.c.status).where(jobs.c.id.in_(ids))).all())


def status_counts(db: Engine, ids: list[str]) -> Counter[str]:
    return Counter(statuses(db, ids).values())


def attempts(db: Engine, ids: list[str]) -> dict[str, int]:
    with db.connect() as conn:
        return dict(conn.execute(select(jobs.c.id, jobs.c.attempts).where(jobs.c.id.in_(ids))).all())


def wait_all_final(db: Engine, ids: list[str], timeout: float) -> dict[str, str]:
    """Poll PostgreSQL (cheaper than hundreds of GETs) until every job is final; {id: status}."""

    def done() -> dict[str, str] | None:
        found = statuses(db, ids)
        return found if len(found) == len(ids) and all(s in FINAL for s in found.values()) else None

    return wait_for(done, timeout, interval=0.3, what=f"{len(ids)} jobs to finish")
