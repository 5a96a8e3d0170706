"""Store queries against the real PostgreSQL: claims, idempotent writes, cancel races, the sweeper."""

from __future__ import annotations

import secrets
from datetime import timedelta

import pytest
from sqlalchemy import Engine, func, select, update

from store import jobs as q
from store.keys import ensure_tenant
from store.tables import jobs


@pytest.fixture
def owner(db: Engine) -> str:
    with db.begin() as conn:
        return ensure_tenant(conn, f"store-{secrets.token_hex(4)}")


def make_jobs(db: Engine, owner: str, n: int, text: str = "hello") -> list[str]:
    with db.begin() as conn:
        created = q.create_jobs(conn, owner, [q.JobSpec("sentiment", {"text": f"{text} {i}"}) for i in range(n)])
    return [row["id"] for row in created.rows]


def row(db: Engine, job_id: str):
    with db.connect() as conn:
        return conn.execute(select(jobs).where(jobs.c.id == job_id)).mappings().one()


def test_claim_takes_queued_jobs_once_and_sets_a_lease(db: Engine, owner: str) -> None:
    ids = make_jobs(db, owner, 3)
    with db.begin() as conn:
        first = q.claim_jobs(conn, ids, lease_seconds=60)
        second = q.claim_jobs(conn, ids, lease_seconds=60)
    assert [c.id for c in first] == ids and second == []
    stored = row(db, ids[0])
    assert stored["status"] == "running" and stored["attempts"] == 1
    assert stored["lease_expires_at"] > stored["started_at"]


def test_finish_never_overwrites_a_finished_job(db: Engine, owner: str) -> None:
    (job_id,) = make_jobs(db, owner, 1)
    with db.begin() as conn:
        (claimed,) = q.claim_jobs(conn, [job_id], 60)
        assert q.finish_jobs(conn, [q.Outcome(job_id, claimed.attempt, result={"label": "first"})]) == {
            job_id: "succeeded"
        }
        again = q.finish_jobs(conn, [q.Outcome(job_id, claimed.attempt, result={"label": "second"})])
    assert again == {}
    assert row(db, job_id)["result"] == {"label": "first"}


def test_a_stale_attempt_cannot_write_over_a_newer_one(db: Engine, owner: str) -> None:
    (job_id,) = make_jobs(db, owner, 1)
    with db.begin() as conn:
        (old,) = q.claim_jobs(conn, [job_id], 60)
        conn.execute(update(jobs).where(jobs.c.id == job_id).values(status="queued"))  # as the sweeper would
        (new,) = q.claim_jobs(conn, [job_id], 60)
        assert q.finish_jobs(conn, [q.Outcome(job_id, old.attempt, result={"who": "old"})]) == {}
        assert q.finish_jobs(conn, [q.Outcome(job_id, new.attempt, result={"who": "new"})]) == {job_id: "succeeded"}
    assert row(db, job_id)["result"] == {"who": "new"} and row(db, job_id)["attempts"] == 2


def test_canceling_a_running_job_discards_its_result(db: Engine, owner: str) -> None:
    (job_id,) = make_jobs(db, owner, 1)
    with db.begin() as conn:
        (claimed,) = q.claim_jobs(conn, [job_id], 60)
        canceled, before = q.cancel_job(conn, owner, job_id)
        assert before == "running" and canceled["status"] == "canceled"
        assert q.finish_jobs(conn, [q.Outcome(job_id, claimed.attempt, result={"label": "late"})]) == {}
    assert row(db, job_id)["status"] == "canceled" and row(db, job_id)["result"] is None


def test_sweeper_republishes_lost_queued_jobs_requeues_expired_leases_and_gives_up(db: Engine, owner: str) -> None:
    lost, expired, exhausted, healthy = make_jobs(db, owner, 4)
    with db.begin() as conn:
        conn.execute(update(jobs).where(jobs.c.id == lost).values(enqueued_at=None))
        q.claim_jobs(conn, [expired, exhausted, healthy], 60)
        conn.execute(
            update(jobs)
            .where(jobs.c.id.in_([expired, exhausted]))
            .values(lease_expires_at=jobs.c.started_at - timedelta(seconds=1))
        )
        conn.execute(update(jobs).where(jobs.c.id == exhausted).values(attempts=3))
        found = q.sweep(conn, requeue_after_seconds=3600, max_attempts=3, limit=100)
    republished = {job_id for job_id, _ in found.republish}
    assert {lost, expired} <= republished and healthy not in republished and exhausted not in republished
    assert exhausted in {job_id for job_id, _ in found.exhausted}
    assert row(db, expired)["status"] == "queued" and row(db, expired)["lease_expires_at"] is None
    assert row(db, healthy)["status"] == "running"
    gave_up = row(db, exhausted)
    assert gave_up["status"] == "failed" and gave_up["error_code"] == "attempts_exhausted"
    with db.begin() as conn:  # republished just now: not again until the threshold passes
        again = q.sweep(conn, requeue_after_seconds=3600, max_attempts=3, limit=100)
    assert lost not in {job_id for job_id, _ in again.republish}


def test_erase_cancels_a_live_job_and_keeps_a_finished_status(db: Engine, owner: str) -> None:
    live, done = make_jobs(db, owner, 2)
    with db.begin() as conn:
        (claimed,) = q.claim_jobs(conn, [done], 60)
        q.finish_jobs(conn, [q.Outcome(done, claimed.attempt, result={"label": "x"})])
        erased_live = q.erase_job(conn, owner, live)
        erased_done = q.erase_job(conn, owner, done)
        assert q.erase_job(conn, "ten_someone_else", done) is None
    assert erased_live["status"] == "canceled" and erased_live["completed_at"] is not None
    assert erased_done["status"] == "succeeded" and erased_done["result"] is None
    assert row(db, done)["input"] is None


def test_retention_erases_only_finished_jobs_past_the_period(db: Engine, owner: str, settings) -> None:
    import redis as redis_lib

    from config.analyses import load_catalog
    from store.tables import job_blobs
    from tasks.context import WorkerContext
    from tasks.sweep import retention_once

    old_done, new_done, old_queued = make_jobs(db, owner, 3)
    with db.begin() as conn:
        claimed = q.claim_jobs(conn, [old_done, new_done], 60)
        q.finish_jobs(conn, [q.Outcome(c.id, c.attempt, result={"label": "x"}) for c in claimed])
        conn.execute(job_blobs.insert().values(job_id=old_done, content_type="audio/wav", data=b"RIFF"))
        long_ago = func.now() - timedelta(days=40)
        conn.execute(update(jobs).where(jobs.c.id.in_([old_done, old_queued])).values(completed_at=long_ago))
    ctx = WorkerContext(settings, db, redis_lib.Redis.from_url(settings.redis_url), load_catalog())
    assert retention_once(ctx) >= 1
    erased, kept, live = row(db, old_done), row(db, new_done), row(db, old_queued)
    assert erased["erased_at"] is not None and erased["result"] is None and erased["status"] == "succeeded"
    assert kept["erased_at"] is None and kept["result"] == {"label": "x"}
    assert live["erased_at"] is None and live["input"] is not None  # not finished: never expired
    with db.connect() as conn:
        assert (
            conn.execute(select(func.count()).select_from(job_blobs).where(job_blobs.c.job_id == old_done)).scalar_one()
            == 0
        )
