"""Webhook delivery is bounded and fenced: hostile receivers cost one bounded attempt each, odd Retry-After
headers are recorded and scheduled, racing deliverers end in one final state, and signing secrets are
encrypted at rest with keys that rotate without downtime. Real gunicorn, workers and receivers."""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import Engine, select
from standardwebhooks import Webhook

from config.settings import ROOT
from store.keys import create_key
from store.secrets_box import SecretBox, SecretsKeyError
from store.tables import webhook_secrets
from tests.receiver import Receiver
from tests.support import Client, Proc, Stack, free_port, wait_for

DEADLINE = 2


@pytest.fixture(scope="module")
def own_db(fresh_database):
    return fresh_database()


@pytest.fixture(scope="module")
def db(own_db) -> Engine:
    return own_db[1]


@pytest.fixture(scope="module")
def env(own_db, session_env) -> dict[str, str]:
    return {
        "DATABASE_URL": own_db[0],
        "ASSAY_QUEUE_PREFIX": f"wb{secrets.token_hex(3)}",
        "ASSAY_WEBHOOK_ALLOW_PRIVATE": "true",
        "ASSAY_WEBHOOK_SCHEDULE_SECONDS": "[1, 1, 1, 1, 1, 1]",
        "ASSAY_WEBHOOK_TIMEOUT_SECONDS": str(DEADLINE),
        "ASSAY_WEBHOOK_SWEEP_INTERVAL_SECONDS": "0.5",
        "ASSAY_WEBHOOK_PUBLISH_GRACE_SECONDS": "5",
        "ASSAY_WEBHOOK_SECRET_GRACE_SECONDS": "600",
        "ASSAY_SECRETS_KEYS": session_env["ASSAY_SECRETS_KEYS"],
    }


@pytest.fixture(scope="module")
def deliverer(stack: Stack, env: dict[str, str]) -> Proc:
    stack.worker("wb-inference", **env)
    stack.sweeper(**env)
    return stack.webhooks(**env)


@pytest.fixture(scope="module")
def api(stack: Stack, env: dict[str, str], deliverer: Proc) -> str:
    return stack.api(**env)[1]


@pytest.fixture(scope="module")
def receiver() -> Receiver:
    receiver = Receiver(free_port()).start()
    yield receiver
    receiver.stop()


@pytest.fixture
def user(api: str, db: Engine, receiver: Receiver) -> Client:
    with db.begin() as conn:
        client = Client(api, create_key(conn, f"wb-{secrets.token_hex(4)}").secret)
    receiver.secrets.append(client.get("/v1/webhooks/secret").json()["secret"])
    return client


def hooked_job(user: Client, url: str) -> str:
    body = {"analysis": "sentiment", "input": {"text": "fine"}, "webhook": {"url": url}}
    response = user.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    return response.json()["id"]


def attempts_of(user: Client, job_id: str) -> list[dict]:
    events = user.get(f"/v1/jobs/{job_id}/webhooks").json()["data"]
    return events[0]["attempts"] if events else []


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_endless_trickling_and_bomb_answers_each_fail_once_within_the_deadline(
    user: Client, receiver: Receiver, deliverer: Proc
) -> None:
    before = rss_mib(deliverer.pid)
    jobs = {
        path: hooked_job(user, f"{receiver.url}/{path}/{secrets.token_hex(3)}")
        for path in ("endless", "trickle", "bomb")
    }
    for path, job_id in jobs.items():
        first = wait_for(lambda job_id=job_id: attempts_of(user, job_id), 60, interval=0.3, what=f"a {path} attempt")[0]
        assert first["error"], f"{path}: {first}"
        assert first["latency_ms"] <= DEADLINE * 1000 + 1500, f"{path} held the attempt {first['latency_ms']} ms"
        assert first["next_attempt_at"], f"{path}: a failed attempt is retried on schedule"
    assert rss_mib(deliverer.pid) - before < 60, "reading hostile answers does not grow the worker"


def test_odd_and_dated_retry_after_are_recorded_and_scheduled(user: Client, receiver: Receiver) -> None:
    odd = hooked_job(user, f"{receiver.url}/retry-odd/{secrets.token_hex(3)}")
    dated = hooked_job(user, f"{receiver.url}/retry-date/{secrets.token_hex(3)}")
    for job_id, at_least, at_most in ((odd, 0.5, 5), (dated, 25, 35)):
        attempt = wait_for(lambda job_id=job_id: attempts_of(user, job_id), 60, interval=0.3, what="an attempt")[0]
        assert attempt["status_code"] == 503
        wait = datetime.fromisoformat(attempt["next_attempt_at"]) - datetime.fromisoformat(attempt["created_at"])
        assert at_least <= wait.total_seconds() <= at_most, (job_id, wait)
    # the odd one keeps its schedule: it is attempted again, and again, rather than stuck
    wait_for(lambda: len(attempts_of(user, odd)) >= 3, 30, interval=0.5, what="retries on schedule")


def test_two_deliverers_racing_on_one_event_end_in_one_final_state(receiver: Receiver, settings, redis_client) -> None:
    """Deliverer A claims the event and stalls past its lock; the sweep hands the event to deliverer B, which
    delivers it; A's late attempt is logged but cannot move the event back. On the session's database,
    where no sweeper or webhook worker runs, and with an event never published: only A and B touch it."""
    from pipeline.deliveries import deliver_batch, deliverer
    from store.api import JobSpec, create_jobs, events_for_job
    from store.db import make_engine
    from store.deliveries import AttemptRecord, claim_events, record_attempts
    from store.keys import ensure_tenant
    from store.maintenance import due_events
    from store.outbox import create_events
    from store.worker import Outcome, claim_jobs, finish_jobs
    from tests.integration.helpers import worker_context

    own = settings.model_copy(update={"webhook_allow_private": True})
    db = make_engine(own, pool_size=2)
    hook = {"url": f"{receiver.url}/ok/race-{secrets.token_hex(3)}", "events": ["completed"]}
    with db.begin() as conn:
        owner = ensure_tenant(conn, f"race-{secrets.token_hex(3)}")
        (job,) = create_jobs(conn, owner, [JobSpec("sentiment", {"text": "fine"}, webhook=hook)]).rows
        (claimed,) = claim_jobs(conn, [job["id"]], 60)
        finish_jobs(conn, [Outcome(job["id"], claimed.attempt, result={"label": "positive"})])
        (event_id,) = create_events(conn, [job["id"]], publish_epoch=None)
    with db.begin() as conn:
        (a,) = claim_events(conn, [event_id], lock_seconds=0.1)  # deliverer A
    time.sleep(0.3)  # A's lock runs out while it "works"
    with db.begin() as conn:
        assert event_id in due_events(conn, epoch="e-race", drained=False, held=set(), publish_grace_seconds=5)
    ctx = worker_context(own, db, redis_client)
    assert deliver_batch(ctx, deliverer(ctx), [event_id])["run"] == 1  # B
    assert deliverer(ctx).drain(30), "B's attempt recorded"
    with db.begin() as conn:  # A comes back with a (stale) failure
        late = AttemptRecord(event_id, a.attempt, a.url, "pending", None, 2500, "timeout: late", 1.0)
        assert record_attempts(conn, [late]) == {}, "fenced: a newer attempt holds the event"
        ((event, log),) = events_for_job(conn, owner, job["id"])
    assert event["status"] == "delivered" and event["attempts"] == a.attempt + 1
    assert [x["attempt"] for x in log] == [1, 2], "both attempts logged, in order"
    assert log[1]["status_code"] == 204 and log[0]["error"] == "timeout: late"
    assert len([r for r in receiver.received if r.headers.get("webhook-id") == event_id]) == 1
    db.dispose()


def test_signing_secrets_are_encrypted_at_rest_and_previous_ones_sign_through_two_rotations(
    user: Client, receiver: Receiver, db: Engine, env: dict[str, str]
) -> None:
    first = user.get("/v1/webhooks/secret").json()["secret"]
    with db.connect() as conn:
        stored = conn.execute(select(webhook_secrets.c.encrypted)).scalars().all()
    assert stored and not any(first in row or first.removeprefix("whsec_") in row for row in stored)
    assert first in {SecretBox([env["ASSAY_SECRETS_KEYS"]]).decrypt(row) for row in stored}

    second = user.post("/v1/webhooks/secret/rotate").json()["secret"]
    third = user.post("/v1/webhooks/secret/rotate").json()
    assert third["previous_secret_expires_at"] and len({first, second, third["secret"]}) == 3
    receiver.secrets.append(third["secret"])
    job_id = hooked_job(user, f"{receiver.url}/ok/{secrets.token_hex(3)}")
    wait_for(lambda: [r for r in receiver.of_type("job.succeeded") if r.payload["data"]["id"] == job_id], 60)
    (delivery,) = [r for r in receiver.of_type("job.succeeded") if r.payload["data"]["id"] == job_id]
    assert len(delivery.headers["webhook-signature"].split(" ")) == 3
    for secret in (first, second, third["secret"]):
        assert Webhook(secret).verify(delivery.body, delivery.headers)["data"]["id"] == job_id


def test_the_encryption_key_rotates_while_the_api_keeps_serving(
    stack: Stack, user: Client, db: Engine, env: dict[str, str]
) -> None:
    old = env["ASSAY_SECRETS_KEYS"]
    new = Fernet.generate_key().decode()
    shown = user.get("/v1/webhooks/secret").json()["secret"]
    _, both = stack.api(**{**env, "ASSAY_SECRETS_KEYS": f"{new},{old}"})  # step 1: deploy new first, old second
    rolling = Client(both, user.session.headers["Authorization"].removeprefix("Bearer "))
    assert rolling.get("/v1/webhooks/secret").json()["secret"] == shown
    done = subprocess.run(  # step 2: re-encrypt every row under the new key, online
        [sys.executable, "-m", "store.cli", "secrets", "reencrypt"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "DATABASE_URL": env["DATABASE_URL"], "ASSAY_SECRETS_KEYS": f"{new},{old}"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert "re-encrypted" in done.stdout
    assert rolling.get("/v1/webhooks/secret").json()["secret"] == shown  # served throughout
    with db.connect() as conn:  # step 3: the old key can go
        rows = conn.execute(select(webhook_secrets.c.encrypted)).scalars().all()
    assert shown in {SecretBox([new]).decrypt(row) for row in rows}
    with pytest.raises(SecretsKeyError):
        SecretBox([old]).decrypt(rows[0])


def test_a_tenant_whose_secret_does_not_decrypt_does_not_stop_the_others(db: Engine, env: dict[str, str]) -> None:
    """A secret written under a key this deployment lacks (a half-rolled key rotation, a restore under
    other keys) raised for the whole batch of events: every tenant in it stopped getting deliveries."""
    from store.keys import ensure_tenant
    from store.webhook_secrets import signing_secrets

    box = SecretBox([env["ASSAY_SECRETS_KEYS"]])
    foreign = SecretBox([Fernet.generate_key().decode()])
    with db.begin() as conn:
        good, bad, stale = (ensure_tenant(conn, f"wbk-{name}-{secrets.token_hex(3)}") for name in ("a", "b", "c"))
        signing_secrets(conn, [good, bad, stale], box)  # each gets its current secret
        conn.execute(
            webhook_secrets.update()
            .where(webhook_secrets.c.tenant_id == bad)
            .values(encrypted=foreign.encrypt("whsec_unreadable"))
        )
        conn.execute(  # a previous secret that does not decrypt: the current one still signs
            webhook_secrets.insert().values(
                tenant_id=stale, encrypted=foreign.encrypt("whsec_old"), expires_at=datetime(2999, 1, 1)
            )
        )
        found = signing_secrets(conn, [good, bad, stale], box)
        conn.execute(webhook_secrets.delete().where(webhook_secrets.c.tenant_id.in_([bad, stale])))  # module's db
    assert set(found) == {good, stale}
    assert len(found[good]) == 1 and len(found[stale]) == 1 and found[stale][0].startswith("whsec_")


def test_reencrypting_a_secret_no_key_opens_names_it_in_one_line(db: Engine, env: dict[str, str]) -> None:
    """`secrets reencrypt` over a row written under a missing key ended in a bare InvalidToken traceback."""
    from store.keys import ensure_tenant

    with db.begin() as conn:
        tenant = ensure_tenant(conn, f"wbk-lost-{secrets.token_hex(3)}")
        conn.execute(
            webhook_secrets.insert().values(
                tenant_id=tenant, encrypted=SecretBox([Fernet.generate_key().decode()]).encrypt("whsec_lost")
            )
        )
    try:
        done = subprocess.run(
            [sys.executable, "-m", "store.cli", "secrets", "reencrypt"],
            cwd=ROOT,
            env={
                "PATH": "/usr/bin:/bin",
                "DATABASE_URL": env["DATABASE_URL"],
                "ASSAY_SECRETS_KEYS": env["ASSAY_SECRETS_KEYS"],
            },
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        with db.begin() as conn:
            conn.execute(webhook_secrets.delete().where(webhook_secrets.c.tenant_id == tenant))
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    # The first row no key opens: this one, or one the key-rotation test above left under its new key.
    assert re.match(r"error: webhook secret \d+ \(tenant \S+\) does not decrypt", done.stderr), done.stderr


def test_redelivery_racing_a_claim_leaves_the_event_to_its_deliverer(api_url: str, settings, redis_client) -> None:
    """POST redeliver reads the event `pending` while a deliverer's claim (not yet committed) takes it: the
    redelivery must see the claim and answer 409, not move the event back to `pending` under its deliverer
    (which then had its attempt fenced out and the event sent a second time at once). On the session's
    database, where no sweeper or webhook worker runs."""
    import contextlib
    import threading

    from sqlalchemy import text

    from store.api import JobSpec, create_jobs
    from store.db import make_engine
    from store.deliveries import claim_events
    from store.keys import create_key as issue
    from store.outbox import create_events
    from store.tables import webhook_events
    from store.worker import Outcome, claim_jobs, finish_jobs

    db = make_engine(settings, pool_size=3)
    hook = {"url": "https://receiver.example/hook", "events": ["completed"]}
    with db.begin() as conn:
        key = issue(conn, f"redeliver-race-{secrets.token_hex(3)}")
        (job,) = create_jobs(conn, key.tenant_id, [JobSpec("sentiment", {"text": "fine"}, webhook=hook)]).rows
        (claimed,) = claim_jobs(conn, [job["id"]], 60)
        finish_jobs(conn, [Outcome(job["id"], claimed.attempt, result={"label": "positive"})])
        (event_id,) = create_events(conn, [job["id"]], publish_epoch=None)
    user = Client(api_url, key.secret)
    answers: list = []
    with db.connect() as claimer:
        tx = claimer.begin()
        (claim,) = claim_events(claimer, [event_id], lock_seconds=60)  # the deliverer's claim, uncommitted
        backend = claimer.execute(text("SELECT pg_backend_pid()")).scalar_one()
        thread = threading.Thread(target=lambda: answers.append(user.post(f"/v1/webhooks/{event_id}/redeliver")))
        thread.start()

        def redelivery_waits_on_the_claim() -> bool:
            with db.connect() as conn:
                return bool(
                    conn.execute(
                        text("SELECT count(*) FROM pg_stat_activity WHERE :pid = ANY(pg_blocking_pids(pid))"),
                        {"pid": backend},
                    ).scalar_one()
                )

        with contextlib.suppress(TimeoutError):  # it did not wait for the claim: the answer below tells
            wait_for(redelivery_waits_on_the_claim, 5, interval=0.05, what="the redelivery blocked by the claim")
        tx.commit()
    thread.join(30)
    (answer,) = answers
    with db.connect() as conn:
        event = conn.execute(select(webhook_events).where(webhook_events.c.id == event_id)).mappings().one()
    db.dispose()
    assert answer.status_code == 409, answer.text
    assert answer.json()["error"]["code"] == "webhook_delivery_in_progress"
    assert event["status"] == "delivering" and event["attempts"] == claim.attempt, dict(event)


def _final_events_claimed(db, tenant: str, count: int) -> tuple[str, list[str], list]:
    """`count` succeeded jobs of a new tenant, each with its final webhook event, claimed for delivery:
    (owner, event ids, claimed events)."""
    from store.api import JobSpec, create_jobs
    from store.deliveries import claim_events
    from store.keys import ensure_tenant
    from store.outbox import create_events
    from store.worker import Outcome, claim_jobs, finish_jobs

    hook = {"url": "https://receiver.example/hook", "events": ["completed"]}
    with db.begin() as conn:
        owner = ensure_tenant(conn, f"{tenant}-{secrets.token_hex(3)}")
        specs = [JobSpec("sentiment", {"text": f"{tenant} {i}"}, webhook=hook) for i in range(count)]
        ids = [r["id"] for r in create_jobs(conn, owner, specs).rows]
        claimed = claim_jobs(conn, ids, 60)
        finish_jobs(conn, [Outcome(c.id, c.attempt, result={"label": "positive"}) for c in claimed])
        events = create_events(conn, ids, publish_epoch=None)
    with db.begin() as conn:
        taken = claim_events(conn, events, lock_seconds=60)
    return owner, events, taken


def test_one_record_the_database_refuses_does_not_stop_the_others(settings) -> None:
    """The recorder retried a refused statement as a whole for ever: one record with a value PostgreSQL
    does not take (a NUL in its error) held back every tenant's attempt records behind it, and their
    events were sent again once their locks ran out. Now the refused record is split off and dropped."""
    from sqlalchemy import select

    from pipeline.attempt_recorder import AttemptRecorder
    from store.db import make_engine
    from store.deliveries import AttemptRecord
    from store.tables import webhook_events

    db = make_engine(settings, pool_size=2)
    owner, events, taken = _final_events_claimed(db, "refused", 5)
    recorder = AttemptRecorder(db, linger_seconds=0.5)
    recorder.expect(len(taken))
    for index, event in enumerate(taken):
        error = "bad\x00byte" if index == 2 else None
        recorder.add(owner, AttemptRecord(event.id, event.attempt, event.url, "delivered", 204, 5, error, None))
    assert recorder.drain(20), "the recorder is stuck on a refused record"
    with db.connect() as conn:
        statuses = dict(
            conn.execute(
                select(webhook_events.c.id, webhook_events.c.status).where(webhook_events.c.id.in_(events))
            ).all()
        )
    refused = taken[2].id
    assert statuses.pop(refused) == "delivering", "the refused record is left to its lock"
    assert set(statuses.values()) == {"delivered"}, statuses
    db.dispose()


def test_a_busy_connection_pool_holds_the_records_rather_than_dropping_them(settings) -> None:
    """A pool with no connection to spare (every one in use past its checkout timeout) raises SQLAlchemy's
    own TimeoutError, not a statement PostgreSQL refused: the records wait for a connection and are written,
    and the recorder lives on. Split as refused, each lone record read `.orig` (which only a DBAPIError has)
    and the AttributeError ended the recorder's thread: no attempt record was written again."""
    from sqlalchemy import create_engine, select

    from pipeline.attempt_recorder import AttemptRecorder
    from store.deliveries import AttemptRecord
    from store.tables import webhook_events

    db = create_engine(settings.database_url, pool_size=1, max_overflow=0, pool_timeout=0.2)
    owner, events, taken = _final_events_claimed(db, "pool", 2)
    recorder = AttemptRecorder(db)
    held = db.connect()  # the pool's only connection, busy past the checkout timeout
    try:
        recorder.expect(len(taken))
        for event in taken:
            recorder.add(owner, AttemptRecord(event.id, event.attempt, event.url, "delivered", 204, 5, None, None))
        time.sleep(1.0)  # a few checkout timeouts
    finally:
        held.close()
    assert recorder.drain(10), "the records were not written once a connection was free"
    with db.connect() as conn:
        statuses = set(conn.execute(select(webhook_events.c.status).where(webhook_events.c.id.in_(events))).scalars())
    db.dispose()
    assert statuses == {"delivered"}, statuses
