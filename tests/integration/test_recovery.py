"""Nothing accepted is lost: a worker SIGKILLed mid-batch, and a Redis that lost every message.

Each test runs its own API, workers and sweeper on a queue prefix of its own.
"""

from __future__ import annotations

import os
import secrets
import signal
import time
from collections import Counter
from pathlib import Path

import redis
from sqlalchemy import Engine

from store.keys import create_key
from tests.integration.helpers import attempts, queued_task_args, status_counts, statuses, wait_all_final
from tests.support import Client, Stack, wait_for
from workers.health import role_from_environ
from workers.processes import ProcessSpec

# ~250 tokens: a 32-job model batch takes about a second on two CPU cores, long enough to
# kill the worker while one is in flight.
#: Well inside the inference workers' terminationGracePeriodSeconds (120 s; 180 s on GPUs).
GRACE_SECONDS = 60
JOBS = 64
LONG_TEXT = " ".join(["The delivery arrived late and the box was damaged but support was helpful."] * 18)


def isolated(fresh_database) -> tuple[dict[str, str], Engine, str]:
    """Own queues and own database: this stack's sweeper must see only this test's jobs."""
    url, db = fresh_database()
    with db.begin() as conn:
        key = create_key(conn, "recovery").secret
    return {"ASSAY_QUEUE_PREFIX": f"r{secrets.token_hex(3)}", "DATABASE_URL": url}, db, key


def _settled_successes(db: Engine, ids: list[str], quiet_seconds: float = 1.0, limit: float = 20.0) -> set[str]:
    """The succeeded jobs once two reads `quiet_seconds` apart agree."""
    deadline = time.monotonic() + limit
    done = {j for j, status in statuses(db, ids).items() if status == "succeeded"}
    while time.monotonic() < deadline:
        time.sleep(quiet_seconds)
        now = {j for j, status in statuses(db, ids).items() if status == "succeeded"}
        if now == done:
            return done
        done = now
    raise AssertionError("the killed worker's jobs kept finishing")


def test_worker_killed_mid_batch_every_job_finishes_exactly_once(stack: Stack, fresh_database) -> None:
    env, db, key = isolated(fresh_database)
    _, url = stack.api(**env)
    client = Client(url, key)
    victim = stack.worker("victim", **env)
    stack.sweeper(**env)

    ids = [job["id"] for job in client.submit_batch([f"{i}. {LONG_TEXT}" for i in range(300)])]
    wait_for(
        lambda: (c := status_counts(db, ids))["succeeded"] >= 32 and c["running"] > 0,
        90,
        interval=0.05,
        what="a batch in flight after at least one finished",
    )
    victim.kill()
    time.sleep(0.5)
    at_kill = statuses(db, ids)
    # A COMMIT the victim sent just before the kill still lands, later on a loaded machine: what it
    # finished is what is succeeded once that set stops growing (nothing else runs models meanwhile).
    finished_before_kill = _settled_successes(db, ids)
    in_flight = [j for j, status in at_kill.items() if status == "running" and j not in finished_before_kill]
    assert in_flight and finished_before_kill

    rescuer = stack.worker("rescuer", **env)
    final = wait_all_final(db, ids, timeout=180)
    assert Counter(final.values()) == Counter({"succeeded": 300})

    ours = set(ids)
    finished = Counter(
        r["job_id"] for proc in (victim, rescuer) for r in proc.log_events("job finished") if r["job_id"] in ours
    )
    assert max(finished.values()) == 1, "no job was finished twice"
    rescued = {r["job_id"] for r in rescuer.log_events("job finished")} & ours
    assert rescued == ours - finished_before_kill, "the rescuer finished exactly the jobs left unfinished"

    tries = attempts(db, ids)
    assert all(tries[job_id] == 2 for job_id in in_flight), "a job cut off mid-batch ran a second time, counted"
    assert all(tries[job_id] == 1 for job_id in finished_before_kill)
    assert all(1 <= n <= 2 for n in tries.values())


def test_a_worker_frozen_inside_its_write_keeps_its_jobs_no_longer_than_the_statement_timeout(
    stack: Stack, fresh_database
) -> None:
    """A worker frozen (SIGSTOP, a VM paused, a partition) inside a transaction (its result write, or a lease
    renewal, between the statement and its COMMIT) holds the rows of its batch locked. The sweeper skips locked
    rows, so the jobs stayed `running` long after their leases ran out, for as long as the freeze lasted
    (behind a partition, until the server's TCP keepalive gave up: two hours by default), though a lease is
    held only by a live worker. PostgreSQL now ends a session left idle inside a transaction for
    ASSAY_DB_STATEMENT_TIMEOUT_MS, which releases its locks, and another worker runs the jobs.

    To freeze the worker there every time, the test holds one of the batch's rows itself, so the worker's
    statements wait on it; freezes the worker; then lets go, so they complete on the server and their
    transaction stays open."""
    from sqlalchemy import text

    env, db, key = isolated(fresh_database)
    # A lease well past the model's time on a loaded machine: the worker is frozen before any lease lapses.
    env.update(ASSAY_DB_STATEMENT_TIMEOUT_MS="3000", ASSAY_LEASE_SECONDS="15")
    _, url = stack.api(**env)
    victim = stack.worker("frozen", **env)
    stack.sweeper(**env)
    ids = [job["id"] for job in Client(url, key).submit_batch([f"{i}. {LONG_TEXT}" for i in range(32)])]

    def updates() -> list:
        """The sessions updating jobs, as pg_stat_activity shows them now (a fresh transaction each time:
        the view is a snapshot per transaction)."""
        with db.connect() as conn:
            return list(
                conn.execute(
                    text(
                        "SELECT state, wait_event_type FROM pg_stat_activity WHERE datname = current_database()"
                        " AND query LIKE '%UPDATE jobs SET%'"
                    )
                )
            )

    with db.connect() as holder:
        with holder.begin():
            wait_for(lambda: status_counts(db, ids)["running"] == 32, 60, interval=0.05, what="the batch claimed")
            holder.execute(text("SELECT id FROM jobs WHERE id = :id FOR UPDATE"), {"id": ids[-1]})
            wait_for(
                lambda: any(r.wait_event_type == "Lock" for r in updates()),
                60,
                interval=0.02,
                what="the worker waiting on the held row",
            )
            victim.signal(signal.SIGSTOP)
        try:  # the held row is let go: the worker's statement completes on the server, its transaction stays open
            wait_for(
                lambda: any(r.state == "idle in transaction" for r in updates()),
                10,
                interval=0.05,
                what="the frozen worker's transaction left open",
            )
            frozen_at = time.monotonic()
            rescuer = stack.worker("rescuer", **env)
            final = wait_all_final(db, ids, timeout=60)
            took = time.monotonic() - frozen_at
        finally:
            victim.signal(signal.SIGCONT)
    assert Counter(final.values()) == Counter({"succeeded": 32}), final
    assert set(attempts(db, ids).values()) == {2}, "the frozen worker's batch ran again, once"
    ours = set(ids)
    finished = Counter(
        r["job_id"] for proc in (victim, rescuer) for r in proc.log_events("job finished") if r["job_id"] in ours
    )
    assert set(finished.values()) == {1}, "each job finished once"
    assert took < 60


def test_redis_emptied_after_accepting_jobs_the_sweeper_finishes_them(
    stack: Stack,
    fresh_database,
    private_redis: str,
) -> None:
    env, db, key = isolated(fresh_database)
    env["REDIS_URL"] = private_redis  # a server of its own: emptying it touches no other test
    redis_client = redis.Redis.from_url(private_redis)
    _, url = stack.api(**env)
    client = Client(url, key)
    ids = [job["id"] for job in client.submit_batch([f"batch job {i} is great" for i in range(50)])]
    ids += [client.submit(f"single job {i} is awful")["id"] for i in range(10)]
    assert redis_client.llen(f"{env['ASSAY_QUEUE_PREFIX']}.text") > 0

    redis_client.flushdb()  # every message, binding and unacked entry is gone
    assert redis_client.dbsize() == 0

    stack.worker("after-flush", **env)
    stack.sweeper(**env)
    final = wait_all_final(db, ids, timeout=120)
    assert Counter(final.values()) == Counter({"succeeded": 60})
    assert set(attempts(db, ids).values()) == {1}


def test_sigterm_drains_a_worker_within_the_grace_period(stack: Stack, fresh_database, redis_client) -> None:
    """Scale-down as Kubernetes does it: SIGTERM to the container's PID 1 (`assay-role worker`, which execs
    Celery), SIGKILL only after terminationGracePeriodSeconds. The batch in hand must be finished and
    written before the process exits, the messages it had prefetched must be back in Redis for the next
    pod, and no job may be left holding a lease (which would make it wait for the sweeper and run twice).
    test_worker_killed_mid_batch_every_job_finishes_exactly_once shows another worker finishing such a queue.
    """
    env, db, key = isolated(fresh_database)
    # One job per message and one batch of prefetch: the worker holds a known slice of the queue.
    env |= {"ASSAY_PUBLISH_CHUNK_SIZE": "1", "ASSAY_WORKER_PREFETCH_BATCHES": "1"}
    _, url = stack.api(**env)
    client = Client(url, key)
    role = ProcessSpec("worker", "drained", ("-m", "workers.role", "worker"))
    victim = stack.start(role, {**env, "ASSAY_WORKER_FAMILIES": '["text"]', "ASSAY_DEVICE": "cpu"}, "drained")
    wait_for(lambda: victim.log_events("worker ready") or not victim.alive(), 120, interval=0.2, what="ready")
    assert victim.alive(), victim.log_text()[-3000:]
    # The role entry point exec'd Celery (signals reach it directly) and left the role for `assay-health`.
    proc = Path(f"/proc/{victim.pid}")
    assert role_from_environ((proc / "environ").read_bytes()) == "worker"
    assert b"celery" in (proc / "cmdline").read_bytes()

    ids = [job["id"] for job in client.submit_batch([f"{i}. {LONG_TEXT}" for i in range(JOBS)])]
    wait_for(
        lambda: status_counts(db, ids)["running"] > 0,
        90,
        interval=0.05,
        what="a batch in flight",
    )
    in_flight = {job_id for job_id, status in statuses(db, ids).items() if status == "running"}
    signalled = time.monotonic()
    os.kill(victim.pid, signal.SIGTERM)  # to PID 1 alone, as the kubelet does
    wait_for(lambda: not victim.alive(), GRACE_SECONDS, interval=0.05, what="the worker to exit on SIGTERM")
    drained_in = time.monotonic() - signalled
    assert victim.popen is not None and victim.popen.returncode == 0, "a warm shutdown, not a crash"

    at_exit = statuses(db, ids)
    assert "running" not in at_exit.values(), "no job left holding a lease when the worker is gone"
    assert in_flight and all(at_exit[job_id] == "succeeded" for job_id in in_flight), "the batch in hand finished"
    left = {job_id for job_id, status in at_exit.items() if status == "queued"}
    assert left and len(left) + Counter(at_exit.values())["succeeded"] == JOBS

    queue = f"{env['ASSAY_QUEUE_PREFIX']}.text"
    waiting = [job_id for chunk in queued_task_args(redis_client, queue) for job_id in chunk]
    assert sorted(waiting) == sorted(left), "every unfinished job is back in the queue, once"
    finished = Counter(r["job_id"] for r in victim.log_events("job finished") if r["job_id"] in set(ids))
    assert set(finished) == set(ids) - left and max(finished.values()) == 1
    tries = attempts(db, ids)
    assert all(tries[job_id] == 1 for job_id in finished) and all(tries[job_id] <= 1 for job_id in left)
    print(f"drained in {drained_in:.1f}s: {len(in_flight)} in flight finished, {len(left)} handed back")
