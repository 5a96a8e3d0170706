"""Store queries against the real PostgreSQL: claims, idempotent writes, cancel races, the sweeper."""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, update

from store import api as q
from store.keys import ensure_tenant
from store.maintenance import Drained, sweep
from store.tables import jobs
from store.worker import Outcome, claim_jobs, finish_jobs


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
        first = claim_jobs(conn, ids, lease_seconds=60)
        second = claim_jobs(conn, ids, lease_seconds=60)
    assert [c.id for c in first] == ids and second == []
    stored = row(db, ids[0])
    assert stored["status"] == "running" and stored["attempts"] == 1
    assert stored["lease_expires_at"] > stored["started_at"]


def test_finish_never_overwrites_a_finished_job(db: Engine, owner: str) -> None:
    (job_id,) = make_jobs(db, owner, 1)
    with db.begin() as conn:
        (claimed,) = claim_jobs(conn, [job_id], 60)
        assert finish_jobs(conn, [Outcome(job_id, claimed.attempt, result={"label": "first"})]) == {job_id: "succeeded"}
        again = finish_jobs(conn, [Outcome(job_id, claimed.attempt, result={"label": "second"})])
    assert again == {}
    assert row(db, job_id)["result"] == {"label": "first"}


def test_a_stale_attempt_cannot_write_over_a_newer_one(db: Engine, owner: str) -> None:
    (job_id,) = make_jobs(db, owner, 1)
    with db.begin() as conn:
        (old,) = claim_jobs(conn, [job_id], 60)
        conn.execute(update(jobs).where(jobs.c.id == job_id).values(status="queued"))  # as the sweeper would
        (new,) = claim_jobs(conn, [job_id], 60)
        assert finish_jobs(conn, [Outcome(job_id, old.attempt, result={"who": "old"})]) == {}
        assert finish_jobs(conn, [Outcome(job_id, new.attempt, result={"who": "new"})]) == {job_id: "succeeded"}
    assert row(db, job_id)["result"] == {"who": "new"} and row(db, job_id)["attempts"] == 2


def test_canceling_a_running_job_discards_its_result(db: Engine, owner: str) -> None:
    (job_id,) = make_jobs(db, owner, 1)
    with db.begin() as conn:
        (claimed,) = claim_jobs(conn, [job_id], 60)
        canceled, before = q.cancel_job(conn, owner, job_id)
        assert before == "running" and canceled["status"] == "canceled"
        assert finish_jobs(conn, [Outcome(job_id, claimed.attempt, result={"label": "late"})]) == {}
    assert row(db, job_id)["status"] == "canceled" and row(db, job_id)["result"] is None


@pytest.mark.parametrize("stop", ["cancel", "erase"])
def test_a_job_stopped_as_its_claim_commits_never_completes_before_it_started(db: Engine, owner: str, stop) -> None:
    """The cancel's transaction began before the worker's claim committed (it waited on the row's lock): its
    now() was earlier than the claim's, and the canceled job answered completed_at < started_at."""
    (job_id,) = make_jobs(db, owner, 1)
    with db.connect() as stopping:
        with stopping.begin():
            stopping.execute(select(func.now())).scalar_one()  # the transaction's clock starts here
            with db.begin() as worker:
                claim_jobs(worker, [job_id], 60)
            stopped, before = (q.cancel_job if stop == "cancel" else q.erase_job)(stopping, owner, job_id)
        assert before == "running" and stopped["status"] == "canceled"
    stored = row(db, job_id)
    assert stored["completed_at"] >= stored["started_at"], (stored["started_at"], stored["completed_at"])


def test_sweeper_republishes_lost_queued_jobs_requeues_expired_leases_and_gives_up(db: Engine, owner: str) -> None:
    lost, expired, exhausted, healthy = make_jobs(db, owner, 4)
    with db.begin() as conn:
        settled = jobs.c.enqueued_at - timedelta(seconds=10)
        conn.execute(update(jobs).where(jobs.c.id == lost).values(publish_epoch=None, enqueued_at=settled))
        claim_jobs(conn, [expired, exhausted, healthy], 60)
        conn.execute(
            update(jobs)
            .where(jobs.c.id.in_([expired, exhausted]))
            .values(lease_expires_at=jobs.c.started_at - timedelta(seconds=1))
        )
        conn.execute(update(jobs).where(jobs.c.id == exhausted).values(attempts=3))
        found = sweep(conn, epoch="e1", drained=[], requeue_after_seconds=3600, max_attempts=3, limit=100)
    republished = {job_id for job_id, _ in found.republish}
    assert {lost, expired} <= republished and healthy not in republished and exhausted not in republished
    assert exhausted in {job_id for job_id, _ in found.exhausted}
    assert row(db, expired)["status"] == "queued" and row(db, expired)["lease_expires_at"] is None
    assert row(db, healthy)["status"] == "running"
    gave_up = row(db, exhausted)
    assert gave_up["status"] == "failed" and gave_up["error_code"] == "attempts_exhausted"
    with db.begin() as conn:  # republished just now under this epoch: not again while it lasts
        again = sweep(conn, epoch="e1", drained=[], requeue_after_seconds=3600, max_attempts=3, limit=100)
    assert lost not in {job_id for job_id, _ in again.republish}


def test_erase_cancels_a_live_job_and_keeps_a_finished_status(db: Engine, owner: str) -> None:
    live, done = make_jobs(db, owner, 2)
    with db.begin() as conn:
        (claimed,) = claim_jobs(conn, [done], 60)
        finish_jobs(conn, [Outcome(done, claimed.attempt, result={"label": "x"})])
        erased_live, _ = q.erase_job(conn, owner, live)
        erased_done, _ = q.erase_job(conn, owner, done)
        assert q.erase_job(conn, "ten_someone_else", done) is None
    assert erased_live["status"] == "canceled" and erased_live["completed_at"] is not None
    assert erased_done["status"] == "succeeded" and erased_done["result"] is None
    assert row(db, done)["input"] is None


def test_retention_erases_only_finished_jobs_past_the_period(db: Engine, owner: str, settings) -> None:
    import redis as redis_lib

    from pipeline.recovery import retention_once
    from store.tables import job_blobs
    from tests.integration.helpers import worker_context

    old_done, new_done, old_queued = make_jobs(db, owner, 3)
    with db.begin() as conn:
        claimed = claim_jobs(conn, [old_done, new_done], 60)
        finish_jobs(conn, [Outcome(c.id, c.attempt, result={"label": "x"}) for c in claimed])
        conn.execute(job_blobs.insert().values(job_id=old_done, content_type="audio/wav", data=b"RIFF"))
        long_ago = func.now() - timedelta(days=40)
        conn.execute(update(jobs).where(jobs.c.id.in_([old_done, old_queued])).values(completed_at=long_ago))
    ctx = worker_context(settings, db, redis_lib.Redis.from_url(settings.redis_url))
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


def _old_finished_job_with_event(db: Engine, text: str, **event: Any) -> tuple[str, str, str]:
    """(tenant, job id, event id): a succeeded job with a webhook, finished 40 days ago (past the default
    retention), whose `job.succeeded` event then has `event`'s column values."""
    from store.outbox import create_events
    from store.tables import webhook_events

    with db.begin() as conn:
        tenant = ensure_tenant(conn, f"store-{secrets.token_hex(4)}")
        hooked = {"url": "https://receiver.example/hook", "events": ["completed"]}
        spec = q.JobSpec("sentiment", {"text": text}, webhook=hooked)
        (job_id,) = [r["id"] for r in q.create_jobs(conn, tenant, [spec]).rows]
        (claimed,) = claim_jobs(conn, [job_id], 60)
        finish_jobs(conn, [Outcome(job_id, claimed.attempt, result={"label": "positive"})])
        (event_id,) = create_events(conn, [job_id], None)
        conn.execute(update(webhook_events).where(webhook_events.c.id == event_id).values(**event))
        conn.execute(update(jobs).where(jobs.c.id == job_id).values(completed_at=func.now() - timedelta(days=40)))
    return tenant, job_id, event_id


def test_retention_waits_for_a_finished_jobs_webhook_events_to_end(db: Engine, settings) -> None:
    """A receiver down for longer than the retention period (ASSAY_RETENTION_DAYS=1 against the default
    schedule's ~27.6 h of retries, or a Retry-After of up to a day): retention erased the job and, with it,
    its `job.succeeded` event still waiting for its next attempt, which was then never sent. Retention now
    erases a job once its events are delivered, failed or stopped."""
    import redis as redis_lib

    from pipeline.recovery import retention_once
    from store.tables import webhook_events
    from tests.integration.helpers import worker_context

    # Its receiver answered 503 to every attempt so far; the next one is due in an hour.
    _, job_id, event_id = _old_finished_job_with_event(
        db, "waiting for its receiver", attempts=5, next_attempt_at=func.now() + timedelta(hours=1)
    )
    ctx = worker_context(settings, db, redis_lib.Redis.from_url(settings.redis_url))

    retention_once(ctx)
    with db.connect() as conn:
        event = conn.execute(select(webhook_events).where(webhook_events.c.id == event_id)).mappings().first()
    assert event is not None and event["status"] == "pending", "a pending webhook event was erased undelivered"
    assert row(db, job_id)["erased_at"] is None

    with db.begin() as conn:  # the receiver is back: the event is delivered
        conn.execute(update(webhook_events).where(webhook_events.c.id == event_id).values(status="delivered"))
    retention_once(ctx)
    assert row(db, job_id)["erased_at"] is not None and row(db, job_id)["result"] is None


def test_retention_leaves_a_job_whose_event_is_being_redelivered(db: Engine) -> None:
    """Retention picked the job from a snapshot in which its event had ended; a redelivery committing
    meanwhile set the event pending again, and retention's erasure then deleted it: the client had its 202
    for a delivery that never happened. The redelivery now holds the job's row, which retention skips."""
    import threading

    from store.maintenance import expire_jobs
    from store.tables import webhook_events

    tenant, job_id, event_id = _old_finished_job_with_event(db, "redelivered as retention runs", status="failed")

    erased: list[list[str]] = []
    with db.connect() as api:
        redelivery = api.begin()
        assert q.redeliver(api, tenant, event_id, None) == "failed"

        def retention() -> None:
            with db.begin() as conn:
                erased.append(expire_jobs(conn, timedelta(days=30).total_seconds(), 1000))

        runner = threading.Thread(target=retention, daemon=True)
        runner.start()
        runner.join(3)  # with the job's row held it skips the job; before, it waited on the event's row
        redelivery.commit()
    runner.join(30)
    assert erased and job_id not in erased[0], "retention erased a job while its event was being redelivered"
    with db.connect() as conn:
        event = conn.execute(select(webhook_events).where(webhook_events.c.id == event_id)).mappings().first()
    assert event is not None and event["status"] == "pending", event
    assert row(db, job_id)["erased_at"] is None


def _settle(db: Engine, ids: list[str], epoch: str | None, seconds: float) -> None:
    """Make jobs look published `seconds` ago under `epoch`."""
    with db.begin() as conn:
        conn.execute(
            update(jobs)
            .where(jobs.c.id.in_(ids))
            .values(publish_epoch=epoch, enqueued_at=func.now() - timedelta(seconds=seconds))
        )


def _republished(db: Engine, **kwargs) -> set[str]:
    with db.begin() as conn:
        found = sweep(conn, requeue_after_seconds=60, max_attempts=3, limit=1000, **kwargs)
    return {job_id for job_id, _ in found.republish}


def test_a_message_still_in_the_broker_is_never_published_again(db: Engine, owner: str) -> None:
    waiting = make_jobs(db, owner, 3)
    _settle(db, waiting, "e1", seconds=3600)  # an hour in a queue that is not empty: a backlog, not a loss
    assert _republished(db, epoch="e1", drained=[]) & set(waiting) == set()


def test_jobs_of_an_old_epoch_are_published_again_once(db: Engine, owner: str) -> None:
    before_restart = make_jobs(db, owner, 3)
    _settle(db, before_restart, "e1", seconds=5)
    assert _republished(db, epoch="e2", drained=[]) >= set(before_restart)  # Redis lost e1 and its messages
    assert _republished(db, epoch="e2", drained=[]) & set(before_restart) == set()
    assert {row(db, j)["publish_epoch"] for j in before_restart} == {"e2"}


def test_a_webhook_event_is_stamped_published_on_the_databases_clock(db: Engine, owner: str) -> None:
    """The webhook sweep compares `published_at` with PostgreSQL's now(), as the job sweep does `enqueued_at`;
    but the outbox stamped it with the clock of the process that made the event (an API or a worker). On a host
    whose clock ran S seconds ahead of the database's, an event lost with Redis was published again only S
    seconds late (never re-sent, for a clock hours off); one S > 2 s behind was re-sent while its message still
    waited. The event is now stamped in the statement that inserts it, as the job is."""
    from store.outbox import create_events
    from store.tables import webhook_events

    with db.begin() as conn:
        hooked = {"url": "https://receiver.example/hook", "events": ["started", "completed"]}
        (job_id,) = [
            r["id"] for r in q.create_jobs(conn, owner, [q.JobSpec("sentiment", {"text": "t"}, webhook=hooked)]).rows
        ]
        claim_jobs(conn, [job_id], 60)
        (event_id,) = create_events(conn, [job_id], "e1")
        published, enqueued, now = conn.execute(
            select(webhook_events.c.published_at, jobs.c.enqueued_at, func.now())
            .join(jobs, jobs.c.id == webhook_events.c.job_id)
            .where(webhook_events.c.id == event_id)
        ).one()
    assert enqueued == now, "the job's publish time is PostgreSQL's"
    assert published == now, f"the event's publish time came from another clock: {published} against {now}"


def test_a_stray_is_published_again_only_when_its_queue_is_empty_and_no_worker_holds_it(db: Engine, owner: str) -> None:
    stray, held, fresh = make_jobs(db, owner, 3)
    _settle(db, [stray, held], "e1", seconds=120)  # older than requeue_after (60 s)
    _settle(db, [fresh], "e1", seconds=10)
    assert _republished(db, epoch="e1", drained=[]) & {stray, held, fresh} == set()  # queue not drained
    drained = [Drained(["sentiment"], {held})]
    assert _republished(db, epoch="e1", drained=drained) & {stray, held, fresh} == {stray}


def test_leases_are_renewed_only_for_the_attempt_that_holds_them(db: Engine, owner: str) -> None:
    from store.worker import renew_leases

    mine, taken_over = make_jobs(db, owner, 2)
    with db.begin() as conn:
        claimed = {c.id: c.attempt for c in claim_jobs(conn, [mine, taken_over], 1)}
        conn.execute(update(jobs).where(jobs.c.id == taken_over).values(attempts=jobs.c.attempts + 1))
    before = row(db, mine)["lease_expires_at"]
    with db.begin() as conn:
        assert renew_leases(conn, claimed, 600) == 1
    assert row(db, mine)["lease_expires_at"] > before + timedelta(seconds=500)
    assert row(db, taken_over)["lease_expires_at"] < before + timedelta(seconds=5)


def test_one_row_held_elsewhere_does_not_stop_the_other_leases_being_renewed(db: Engine, owner: str) -> None:
    """The renewal is one statement for the batch: a row another transaction held (a cancel, a frozen process)
    made it wait into the statement timeout, and then no lease of the batch was renewed: every job of it ran
    again on another worker."""
    from sqlalchemy import text

    from store.worker import renew_leases

    free, held = make_jobs(db, owner, 2)
    with db.begin() as conn:
        claimed = {c.id: c.attempt for c in claim_jobs(conn, [free, held], 1)}
    before = row(db, free)["lease_expires_at"]
    with db.connect() as holder, holder.begin():
        holder.execute(select(jobs.c.id).where(jobs.c.id == held).with_for_update())
        with db.begin() as conn:
            conn.execute(text("SET LOCAL lock_timeout = '2s'"))  # waiting at all is the failure
            assert renew_leases(conn, claimed, 600) == 1
    assert row(db, free)["lease_expires_at"] > before + timedelta(seconds=500)
    assert row(db, held)["lease_expires_at"] < before + timedelta(seconds=5)


def test_the_cache_lookup_probes_the_index_whatever_the_statistics(db: Engine, owner: str) -> None:
    """10,000 live jobs, freshly analysed: `cache_key = ANY(keys)` was planned as a scan of all of `jobs`
    (5 ms per 100-job batch, growing with the backlog); the lookup must stay an index probe per key, in
    the plan made for one call and in the generic plan PL/pgSQL keeps for the connection after five.
    The function's own source, as migrated, is what is planned. Rolled back, so no other test sees the rows."""
    from sqlalchemy import text

    from store.result_cache import lookup, lookup_statement

    tag = secrets.token_hex(4)
    with db.connect() as conn, conn.begin() as transaction:
        conn.execute(
            text(
                "INSERT INTO jobs (id, owner, analysis, input, metadata, status, attempts, created_at, enqueued_at,"
                " cache_key) SELECT 'job_lk' || g || :tag, :owner, 'sentiment', '{}', '{}', 'queued', 0, now(),"
                " now(), md5(g || :tag) || md5(:tag || g) FROM generate_series(1, 10000) g"
            ),
            {"tag": tag, "owner": owner},
        )
        conn.exec_driver_sql("ANALYZE jobs")
        live_key = conn.execute(text("SELECT md5(7 || :tag) || md5(:tag || 7)"), {"tag": tag}).scalar_one()
        keys = sorted([live_key, *(secrets.token_hex(32) for _ in range(99))])
        query = lookup_statement(conn).replace("%(keys)s", "$1").replace("%(ttl)s", "$2")
        conn.exec_driver_sql("PREPARE lookup_probe(text, double precision) AS " + query)
        plans = {}
        for mode in ("force_custom_plan", "force_generic_plan"):
            conn.exec_driver_sql(f"SET LOCAL plan_cache_mode = {mode}")
            plans[mode] = (
                conn.execute(text("EXPLAIN EXECUTE lookup_probe(:keys, :ttl)"), {"keys": ",".join(keys), "ttl": 3600.0})
                .scalars()
                .all()
            )
        conn.exec_driver_sql("DEALLOCATE lookup_probe")
        found = [lookup(conn, keys, 3600) for _ in range(7)]  # past the fifth call: the cached plan
        transaction.rollback()
    for plan in plans.values():
        on_jobs = [line.strip() for line in plan if " on jobs" in line]
        assert on_jobs and all("ix_jobs_live_cache_key" in line for line in on_jobs), "\n".join(plan)
    assert all(result == ({live_key: f"job_lk7{tag}"}, {}) for result in found)


def test_connections_notice_a_silent_server_within_about_a_minute(db: Engine) -> None:
    """statement_timeout is the server's to enforce: behind a partition a blocking worker waited on its socket
    for TCP's retransmission limit (~15 min). Read off the connection's real socket, not the settings."""
    import socket

    with db.connect() as conn:
        fd = conn.connection.dbapi_connection.fileno()
        sock = socket.socket(fileno=os.dup(fd))
        try:
            options = {
                "keepalive": sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
                "idle": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
                "interval": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
                "count": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
                "user_timeout_ms": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
            }
        finally:
            sock.close()
    assert options["keepalive"] and options["user_timeout_ms"] == 60_000, options
    assert options["idle"] + options["interval"] * options["count"] <= 60, options


def test_the_cache_lookup_works_before_its_function_is_migrated(db: Engine, owner: str) -> None:
    """A rollout may start the new API before its migrate Job ends: with no `assay_cache_lookup` yet (0008),
    every cached submission was a 500. The function is dropped inside a transaction that is rolled back."""
    from sqlalchemy import text

    from store import result_cache

    key = secrets.token_hex(32)
    with db.connect() as conn, conn.begin() as transaction:
        conn.execute(
            text(
                "INSERT INTO jobs (id, owner, analysis, input, metadata, status, attempts, created_at, cache_key)"
                " VALUES (:id, :owner, 'sentiment', '{}', '{}', 'queued', 0, now(), :key)"
            ),
            {"id": f"job_fn{key[:8]}", "owner": owner, "key": key},
        )
        conn.exec_driver_sql("DROP FUNCTION assay_cache_lookup(text, double precision)")
        saved = result_cache._function
        result_cache._function = result_cache._FunctionSeen()
        try:
            before_migration = result_cache.lookup(conn, [key], 3600)
            seen_before = result_cache._function.found
        finally:
            result_cache._function = saved
        transaction.rollback()
    assert before_migration == ({key: f"job_fn{key[:8]}"}, {}) and not seen_before
    with db.connect() as conn:
        result_cache._function = result_cache._FunctionSeen()
        assert result_cache.lookup(conn, [key], 3600) == ({}, {}) and result_cache._function.found
