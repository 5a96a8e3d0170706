"""Faults under load, with real processes: the broker killed, PostgreSQL restarted, a backlog older than the
requeue threshold, a batch that outlives its lease, a poisoned batch, an upload that would decode for minutes.

Each test runs its own API, workers and sweeper, on a database (and where it kills one, servers) of its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import requests
from sqlalchemy import select

from config.settings import load_settings
from deploy.local.services import LocalRedis
from store.db import make_engine
from store.keys import create_key
from tests.integration.faults import Load, private_postgres
from tests.integration.helpers import attempts, wait_all_final
from tests.support import Client, Proc, Stack, free_port, wait_for

FAST_RECOVERY = {"ASSAY_SWEEP_INTERVAL_SECONDS": "1", "ASSAY_REQUEUE_AFTER_SECONDS": "4"}


def isolated(fresh_database, **env: str) -> tuple[dict[str, str], object, str]:
    url, db = fresh_database()
    with db.begin() as conn:
        key = create_key(conn, "faults").secret
    return {"ASSAY_QUEUE_PREFIX": f"fx{secrets.token_hex(3)}", "DATABASE_URL": url, **FAST_RECOVERY, **env}, db, key


def finished_counts(*workers: Proc) -> Counter[str]:
    return Counter(r["job_id"] for w in workers for r in w.log_events("job finished"))


def assert_each_ran_once(worker: Proc, accepted: list[str]) -> None:
    """Every accepted job finished exactly once in the worker. The worker logs "job finished" after its
    commit and its Redis side effects (which retry while Redis comes back), so the log may trail the row
    a little: wait for every line, then count."""
    wait_for(lambda: all(finished_counts(worker)[j] >= 1 for j in accepted), 60, what="every finish logged")
    finished = finished_counts(worker)
    wrong = {job_id: finished[job_id] for job_id in accepted if finished[job_id] != 1}
    assert not wrong, f"each job ran to completion once; runs of the others: {wrong}"


def test_redis_killed_while_clients_submit_every_202_job_succeeds_once(stack: Stack, fresh_database, tmp_path) -> None:
    port = free_port()
    broker = LocalRedis(tmp_path / "redis", port, persist=False)
    restarted = LocalRedis(tmp_path / "redis", port, persist=False)
    env, db, key = isolated(fresh_database, REDIS_URL=broker.start())
    try:
        worker = stack.worker("redis-fault", **env)
        stack.sweeper(**env)
        _, url = stack.api(**env)

        load = Load(url, key).start()
        time.sleep(2)
        assert broker.process is not None
        broker.process.send_signal(signal.SIGKILL)  # not flushed: killed, every queued message gone
        broker.process.wait(10)
        time.sleep(3)
        restarted.start()
        time.sleep(3)
        load.stop()

        assert set(load.statuses) <= {202, 503}, load.statuses
        assert load.statuses[202] > 20
        final = wait_all_final(db, load.accepted, timeout=180)
        assert Counter(final.values()) == Counter({"succeeded": len(load.accepted)})
        assert_each_ran_once(worker, load.accepted)
    finally:  # both servers are the test's own: the restarted one was left running after every run
        restarted.stop()
        broker.stop()


def test_after_redis_restarts_the_webhook_worker_takes_messages_as_fast_as_before(
    stack: Stack, fresh_database, tmp_path
) -> None:
    """Celery cuts a worker's prefetch after it reconnects to the broker, to what its pool holds, and restores
    it as tasks finish; but a gevent pool counts the greenlets running now, not its size, so the webhook
    worker's prefetch fell to 2 for good. Its loop (no event loop under gevent) then asked Redis again only
    every 2 s: after one Redis restart it took about one message a second until it was restarted itself, and
    a backlog of finished jobs' events took minutes instead of seconds. 100 one-event messages after a
    restart must be delivered in well under 100 s."""
    import redis as redis_lib

    from broker.celery import make_celery
    from broker.publish import Publisher
    from config.catalog import load_catalog
    from store import api as q
    from store.keys import ensure_tenant
    from store.outbox import create_events
    from store.tables import webhook_events
    from store.worker import Outcome, claim_jobs, finish_jobs
    from tests.receiver import Receiver

    port = free_port()
    broker = LocalRedis(tmp_path / "redis", port, persist=False)
    restarted = LocalRedis(tmp_path / "redis", port, persist=False)
    env, db, _ = isolated(fresh_database, REDIS_URL=broker.start(), ASSAY_WEBHOOK_ALLOW_PRIVATE="true")
    receiver = Receiver(free_port()).start()
    try:
        hooks = stack.webhooks(**env)
        assert broker.process is not None
        broker.process.send_signal(signal.SIGKILL)
        broker.process.wait(10)
        time.sleep(1)
        redis_url = restarted.start()
        wait_for(lambda: hooks.log_text().count("Connected to redis") >= 2, 60, what="the worker reconnected")

        with db.begin() as conn:  # 100 finished jobs, each with its job.succeeded event waiting
            tenant = ensure_tenant(conn, "faults-webhooks")
            hooked = {"url": f"{receiver.url}/ok", "events": ["completed"]}
            specs = [q.JobSpec("sentiment", {"text": f"restart {i}"}, webhook=hooked) for i in range(100)]
            ids = [r["id"] for r in q.create_jobs(conn, tenant, specs).rows]
            finish_jobs(
                conn, [Outcome(j.id, j.attempt, result={"label": "positive"}) for j in claim_jobs(conn, ids, 60)]
            )
            events = create_events(conn, ids, None)
        settings = load_settings(
            database_url=env["DATABASE_URL"], redis_url=redis_url, queue_prefix=env["ASSAY_QUEUE_PREFIX"]
        )
        publisher = Publisher(redis_lib.Redis.from_url(redis_url), settings, load_catalog(), make_celery(settings))
        started = time.monotonic()
        for event_id in events:  # one message each, as a worker's lone finished jobs publish them
            publisher.deliveries([event_id])

        def delivered() -> bool:
            with db.connect() as conn:
                statuses = conn.execute(select(webhook_events.c.status).where(webhook_events.c.id.in_(events)))
                return Counter(statuses.scalars()) == Counter({"delivered": len(events)})

        wait_for(delivered, 90, interval=0.5, what="every event delivered")
        took = time.monotonic() - started
        assert took < 30, f"100 messages took {took:.0f} s after the broker restarted"
    finally:
        receiver.stop()
        restarted.stop()
        broker.stop()


def test_redis_frozen_each_submission_is_answered_without_waiting_on_it(stack: Stack, fresh_database, tmp_path) -> None:
    """A Redis that hangs without closing its sockets (SIGSTOP, a partition): every submission waited out the
    Redis timeout four times in a row (rate limit, queue depth, worker capacity, the publish after commit),
    8 s each with the default timeout; a cache hit two more (the long-poll notification, the event stream).
    Now one request pays for finding it hung; the next ones are answered at once, and the sweeper publishes
    their jobs once Redis is back."""
    port = free_port()
    broker = LocalRedis(tmp_path / "redis", port, persist=False)
    env, db, key = isolated(fresh_database, REDIS_URL=broker.start(), ASSAY_REDIS_TIMEOUT_SECONDS="1")
    try:
        worker = stack.worker("redis-frozen", **env)
        stack.sweeper(**env)
        _, url = stack.api(**env, ASSAY_API_WORKERS="1")
        client = Client(url, key)
        accepted = [client.submit("before the freeze")["id"]]
        wait_all_final(db, accepted, timeout=60)  # its result is cached: the same text again is a hit
        ran = list(accepted)

        assert broker.process is not None
        broker.process.send_signal(signal.SIGSTOP)
        took: list[float] = []
        try:
            for i in range(6):
                started = time.monotonic()
                text = "before the freeze" if i % 2 else f"frozen {i}"
                response = client.post("/v1/jobs", json={"analysis": "sentiment", "input": {"text": text}})
                took.append(time.monotonic() - started)
                assert response.status_code == 202, response.text
                accepted.append(response.json()["id"])
                if not i % 2:
                    ran.append(accepted[-1])
        finally:
            broker.process.send_signal(signal.SIGCONT)

        slow = [round(t, 1) for t in took if t >= 1.0]
        assert len(slow) <= 1, f"submissions waited on the hung Redis: {[round(t, 2) for t in took]}"
        final = wait_all_final(db, accepted, timeout=120)
        assert Counter(final.values()) == Counter({"succeeded": len(accepted)})
        assert_each_ran_once(worker, ran)  # the hits never run: they finished at intake
    finally:
        broker.stop()  # also when an assertion failed: the server is the test's own


def test_postgres_restarted_while_clients_submit_no_500_and_nothing_accepted_lost(stack: Stack) -> None:
    with private_postgres() as pg:
        db = make_engine(load_settings(database_url=pg.url), pool_size=2)
        with db.begin() as conn:
            key = create_key(conn, "pg-fault").secret
            # started as `make run` starts its private server: commits reach the disk (make test's own: fsync off)
            assert conn.exec_driver_sql("SHOW fsync").scalar_one() == "on"
        env = {"ASSAY_QUEUE_PREFIX": f"fp{secrets.token_hex(3)}", "DATABASE_URL": pg.url, **FAST_RECOVERY}
        worker = stack.worker("pg-fault", **env)
        stack.sweeper(**env)
        _, url = stack.api(**env)

        load = Load(url, key).start()
        time.sleep(2)
        pg.server.stop("immediate")  # a crash: connections die mid-statement
        time.sleep(3)
        pg.server.start()
        time.sleep(3)
        load.stop()

        assert 500 not in load.statuses and 0 not in load.statuses, load.statuses
        assert set(load.statuses) <= {202, 503}, load.statuses
        assert load.statuses[202] > 20 and load.statuses[503] > 0, "the outage was seen and answered 503"
        final = wait_all_final(db, load.accepted, timeout=180)
        assert Counter(final.values()) == Counter({"succeeded": len(load.accepted)})
        assert_each_ran_once(worker, load.accepted)
        db.dispose()


def test_a_backlog_older_than_the_requeue_threshold_is_not_published_again(
    stack: Stack, fresh_database, redis_client, tmp_path
) -> None:
    from tests.tinybert import build_tiny_bert

    # A tiny classifier: what is measured is the sweeper's re-publishing over a 20,000-job backlog that
    # waits three thresholds (a sweep a second) before a worker drains it, not MiniLM's speed (2+ minutes here).
    model = build_tiny_bert(tmp_path / "tiny", ("non_toxic", "toxic"), hidden=64, layers=2)
    env, db, key = isolated(fresh_database, ASSAY_ANALYSIS_MODELS=json.dumps({"toxicity": f"hf-classifier:{model}"}))
    sweeper = stack.sweeper(**env)
    _, url = stack.api(**env)
    client = Client(url, key)
    ids: list[str] = []
    for chunk in range(20):
        body = {"jobs": [{"analysis": "toxicity", "input": {"text": f"ok {chunk}-{i}"}} for i in range(1000)]}
        response = client.post("/v1/jobs/batch", json=body)
        assert response.status_code == 202, response.text
        ids += [job["id"] for job in response.json()["data"]]
    time.sleep(3 * int(FAST_RECOVERY["ASSAY_REQUEUE_AFTER_SECONDS"]))  # no worker: the backlog just waits
    worker = stack.worker("backlog", **env)

    final = wait_all_final(db, ids, timeout=600)
    assert Counter(final.values()) == Counter({"succeeded": 20_000})
    republished = sum(r["republished"] for r in sweeper.log_events("sweep"))
    duplicates = sum(len(r["job_ids"]) for r in worker.log_events("already handled"))
    assert 20_000 + republished <= 1.1 * 20_000, f"{republished} job ids re-published"
    assert duplicates <= 0.1 * 20_000
    assert set(attempts(db, ids).values()) == {1}, "each job ran once"
    assert max(finished_counts(worker).values()) == 1


def test_a_batch_that_runs_three_times_its_lease_runs_once(stack: Stack, fresh_database, tmp_path) -> None:
    from tests.tinybert import build_tiny_bert

    # A full batch of 32 512-token texts through 12 layers: twice the work of the 24 texts through 8 layers
    # that took 5.8 s on a fast 2-core machine (2026-12-07), under the 3 leases of 2 s the test needs.
    model = build_tiny_bert(tmp_path / "slow-bert", ("non_toxic", "toxic"), hidden=512, layers=12, positions=512)
    env, db, key = isolated(
        fresh_database,
        ASSAY_LEASE_SECONDS="2",
        ASSAY_MAX_MODEL_TOKENS="512",
        ASSAY_ANALYSIS_MODELS=json.dumps({"toxicity": f"hf-classifier:{model}"}),
    )
    worker = stack.worker("slow", **env)
    sweeper = stack.sweeper(**env)
    _, url = stack.api(**env)
    long_text = "the product is great and the service was very good " * 60
    body = {"jobs": [{"analysis": "toxicity", "input": {"text": f"{i} {long_text}"}} for i in range(32)]}
    ids = [job["id"] for job in Client(url, key).post("/v1/jobs/batch", json=body).json()["data"]]

    final = wait_all_final(db, ids, timeout=300)
    assert set(final.values()) == {"succeeded"}
    batches = [r["seconds"] for r in worker.batches_logged(len(ids))]
    assert max(batches) >= 3 * 2, f"the test needs a batch longer than 3 leases, got {batches}"
    assert set(attempts(db, ids).values()) == {1}, "renewed leases: nobody took the jobs over"
    assert max(finished_counts(worker).values()) == 1
    assert sum(r["exhausted"] + r["republished"] for r in sweeper.log_events("sweep")) == 0


def test_an_upload_that_would_decode_for_minutes_is_refused_within_a_second_while_others_are_served(
    stack: Stack, new_key
) -> None:
    from tests.audio import endless_webm

    _, url = stack.api(ASSAY_API_WORKERS="1", ASSAY_QUEUE_PREFIX=f"probe{secrets.token_hex(2)}")
    key = new_key()
    data = endless_webm(hours=3)  # no duration in its header; decoding it all takes minutes
    latencies: list[float] = []

    def meanwhile() -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {key}"
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            started = time.perf_counter()
            assert session.get(f"{url}/v1/analyses", timeout=10).status_code == 200
            latencies.append(time.perf_counter() - started)

    with ThreadPoolExecutor(1) as pool:
        other = pool.submit(meanwhile)
        time.sleep(0.3)
        started = time.perf_counter()
        response = requests.post(
            f"{url}/v1/jobs",
            headers={"Authorization": f"Bearer {key}"},
            data={"analysis": "transcription"},
            files={"file": ("endless.webm", data, "audio/webm")},
            timeout=60,
        )
        took = time.perf_counter() - started
        other.result()
    # Too long is a limit passed (413) however it was found; a length not found in time is unusable (422).
    found = (response.status_code, response.json()["error"]["code"])
    assert found in {(413, "audio_too_long"), (422, "audio_probe_timeout")}, response.text
    assert took < 2.0, f"the upload held the API for {took:.2f}s"
    assert len(latencies) > 5 and max(latencies) < 1.0, f"other requests waited up to {max(latencies):.2f}s"
    assert Client(url, key).get("/v1/jobs").json()["data"] == [], "nothing was created"


def test_postgres_frozen_requests_answer_503_within_the_statement_timeout_and_recover(stack: Stack) -> None:
    """A server that stops answering without closing its sockets (SIGSTOP: a stalled host, a partition that
    drops packets) never enforces statement_timeout; each request waited for it until it came back."""
    from bench.chaos import postgres_pids

    with private_postgres() as pg:
        db = make_engine(load_settings(database_url=pg.url), pool_size=2)
        with db.begin() as conn:
            key = create_key(conn, "pg-frozen").secret
        # statement_timeout 2 s: a wait on PostgreSQL's socket gives up after 2 + 5 s (config.green.green_psycopg);
        # a request meets two at most: the pooled connection's pre-ping, then the fresh connect.
        env = {
            "ASSAY_QUEUE_PREFIX": f"fz{secrets.token_hex(3)}",
            "DATABASE_URL": pg.url,
            "ASSAY_DB_STATEMENT_TIMEOUT_MS": "2000",
            **FAST_RECOVERY,
        }
        worker = stack.worker("pg-frozen", **env)
        _, url = stack.api(**env, ASSAY_API_WORKERS="1")
        client = Client(url, key)
        before = client.submit("before the freeze")["id"]
        calls = {
            "submit": lambda: client.post("/v1/jobs", json={"analysis": "sentiment", "input": {"text": "frozen"}}),
            "wait": lambda: client.get(f"/v1/jobs/{before}", params={"wait": 2}),
            "list": lambda: client.get("/v1/jobs"),
        }

        def timed(what: str) -> tuple[str, int, str, float]:
            started = time.monotonic()
            response = calls[what]()
            code = response.json().get("error", {}).get("code", "")
            return what, response.status_code, code, time.monotonic() - started

        pids = postgres_pids(pg.server.datadir)
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            with ThreadPoolExecutor(len(calls)) as pool:
                answers = list(pool.map(timed, calls, timeout=60))
            time.sleep(max(0.0, 20 - max(a[3] for a in answers)))  # frozen for 20 s at least
        finally:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)

        for what, status, code, took in answers:
            assert (status, code) == (503, "database_unavailable"), answers
            assert took < 2 * 7 + 2, f"{what} answered after {took:.1f} s while PostgreSQL was frozen: {answers}"
        again = {"analysis": "sentiment", "input": {"text": "after"}}
        wait_for(lambda: client.post("/v1/jobs", json=again).status_code == 202, 30, what="intake back")
        assert worker.alive()
        db.dispose()


class _StopsPostgresOnFirstTextCall:
    """The real engines; the first text call stops PostgreSQL (a crash while the model runs), so the audio the
    batch loads next meets the outage."""

    def __init__(self, real, stop) -> None:
        self.real = real
        self.load_seconds = real.load_seconds
        self.stop = stop

    def predict_text(self, items):
        if self.stop is not None:
            self.stop, stop = None, self.stop
            stop()
        return self.real.predict_text(items)

    @property
    def speech(self):
        return self.real.speech


def test_postgres_away_while_a_batch_loads_its_audio_fails_no_job(settings, redis_client) -> None:
    """A PostgreSQL outage longer than the worker's patience, met while a batch loads its audio: the batch
    fell back to one job at a time, each job's own load met the same outage, and each audio job was written
    `failed` with `inference_error: OperationalError` once the database was back. No job was at fault: the
    batch is given up instead (as when its write gives up), and the sweeper hands its jobs on."""
    import logging
    import threading
    from dataclasses import replace

    from sqlalchemy.exc import OperationalError

    from config.settings import ROOT
    from pipeline.batch import process_jobs
    from store import api as q
    from store.keys import ensure_tenant
    from store.maintenance import sweep
    from tests.integration.helpers import statuses, worker_context

    audio = (ROOT / "tests" / "fixtures" / "audio" / "hello.wav").read_bytes()
    with private_postgres() as pg:
        own = settings.model_copy(
            update={
                "database_url": "postgresql+psycopg2://" + pg.url.split("://", 1)[1],
                "db_outage_patience_seconds": 4.0,
                "lease_seconds": 2,
            }
        )
        db = make_engine(own, pool_size=2)
        with db.begin() as conn:
            owner = ensure_tenant(conn, "audio-outage")
            specs = [
                q.JobSpec("sentiment", {"text": "I love this product"}),
                q.JobSpec("transcription", {"audio": {"bytes": len(audio)}}, blob=audio, blob_content_type="audio/wav"),
            ]
            ids = [r["id"] for r in q.create_jobs(conn, owner, specs).rows]
        base = worker_context(own, db, redis_client)
        base.engines.load({"text", "audio"})

        lock, back, scheduled = threading.Lock(), threading.Event(), threading.Event()

        def start_again() -> None:
            with lock:
                if not back.is_set():
                    pg.server.start()
                    back.set()

        class BackLater(logging.Handler):
            """Once the batch falls back to one job at a time, PostgreSQL returns while the first job's own
            load is given up and before the batch's write is: that write then lands whatever was decided."""

            def emit(self, record: logging.LogRecord) -> None:
                if record.getMessage().startswith("batch failed"):
                    scheduled.set()
                    threading.Timer(own.db_outage_patience_seconds + 0.5, start_again).start()

        ctx = replace(base, _engines=_StopsPostgresOnFirstTextCall(base.engines, lambda: pg.server.stop("immediate")))
        handler = BackLater()
        logging.getLogger("pipeline.batch").addHandler(handler)
        try:
            with contextlib.suppress(OperationalError):  # the batch given up: its leases are left to run out
                process_jobs(ctx, ids)
        finally:
            logging.getLogger("pipeline.batch").removeHandler(handler)
            if scheduled.is_set():
                back.wait(30)
            start_again()

        now = statuses(db, ids)
        assert "failed" not in now.values(), f"jobs failed because PostgreSQL was away: {now}"

        time.sleep(own.lease_seconds + 0.5)
        with db.begin() as conn:
            sweep(conn, epoch=None, drained=[], requeue_after_seconds=60, max_attempts=3, limit=100)
        process_jobs(base, ids)
        assert statuses(db, ids) == {job_id: "succeeded" for job_id in ids}
        assert set(attempts(db, ids).values()) == {2}
        db.dispose()
