"""Webhooks end to end: a real gunicorn, inference worker, webhook worker (gevent), sweeper and a real
receiver on loopback that verifies every request with standardwebhooks."""

from __future__ import annotations

import secrets
import time
from collections import Counter
from datetime import datetime

import pytest
from sqlalchemy import Engine, select
from standardwebhooks import Webhook

from store.keys import create_key
from tests.integration.helpers import wait_all_final
from tests.receiver import Receiver
from tests.support import Client, Stack, free_port, wait_for

SCHEDULE = "[1, 1, 1, 1, 1, 1, 1]"


@pytest.fixture(scope="module")
def own_db(fresh_database):
    """This module's stack runs a sweeper: it gets a database of its own."""
    return fresh_database()


@pytest.fixture(scope="module")
def db(own_db) -> Engine:
    return own_db[1]


@pytest.fixture
def new_key(db: Engine):
    def issue() -> str:
        with db.begin() as conn:
            return create_key(conn, f"tenant-{secrets.token_hex(4)}").secret

    return issue


@pytest.fixture(scope="module")
def env(own_db) -> dict[str, str]:
    return {
        "DATABASE_URL": own_db[0],
        "ASSAY_QUEUE_PREFIX": f"wh{secrets.token_hex(3)}",
        "ASSAY_WEBHOOK_ALLOW_PRIVATE": "true",
        "ASSAY_WEBHOOK_SCHEDULE_SECONDS": SCHEDULE,
        "ASSAY_WEBHOOK_TIMEOUT_SECONDS": "2",
        "ASSAY_WEBHOOK_SWEEP_INTERVAL_SECONDS": "0.5",
        "ASSAY_WEBHOOK_PUBLISH_GRACE_SECONDS": "5",
        "ASSAY_WEBHOOK_SECRET_GRACE_SECONDS": "600",
    }


@pytest.fixture(scope="module")
def api(stack: Stack, env: dict[str, str]) -> str:
    stack.worker("wh-inference", **env)
    stack.webhooks(**env)
    stack.sweeper(**env)
    return stack.api(**env)[1]


@pytest.fixture(scope="module")
def receiver() -> Receiver:
    receiver = Receiver(free_port(), hang_seconds=4).start()
    yield receiver
    receiver.stop()


@pytest.fixture
def user(api: str, new_key, receiver: Receiver) -> Client:
    client = Client(api, new_key())
    receiver.secrets.append(client.get("/v1/webhooks/secret").json()["secret"])
    return client


def events(user: Client, job_id: str) -> list[dict]:
    return user.get(f"/v1/jobs/{job_id}/webhooks").json()["data"]


def submit_with_hook(user: Client, url: str, text: str = "I love this product", **hook) -> str:
    body = {"analysis": "sentiment", "input": {"text": text}, "webhook": {"url": url, **hook}}
    response = user.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    return response.json()["id"]


def test_1000_jobs_get_1000_signed_succeeded_deliveries_and_no_duplicates(user: Client, receiver: Receiver, db) -> None:
    token = secrets.token_hex(4)
    body = {
        "jobs": [{"analysis": "sentiment", "input": {"text": f"order {i} arrived, all good"}} for i in range(1000)],
        "webhook": {"url": f"{receiver.url}/ok/{token}"},
    }
    created = user.post("/v1/jobs/batch", json=body)
    assert created.status_code == 202, created.text
    ids = {job["id"] for job in created.json()["data"]}
    assert set(wait_all_final(db, list(ids), 240).values()) == {"succeeded"}

    def mine() -> list:
        return [r for r in receiver.of_type("job.succeeded") if r.payload["data"]["id"] in ids]

    wait_for(lambda: len(mine()) >= 1000, 120, interval=0.5, what="1000 deliveries")
    time.sleep(2)  # anything extra would show up now
    got = mine()
    assert len(got) == 1000
    assert Counter(r.payload["data"]["id"] for r in got) == Counter({job_id: 1 for job_id in ids})
    assert len({r.webhook_id for r in got}) == 1000
    assert all(r.valid for r in got), "every signature verifies with the tenant's secret"
    assert all(r.payload["data"]["status"] == "succeeded" and r.payload["data"]["result"]["label"] for r in got)


def test_receiver_down_then_back_delivers_exactly_once(user: Client) -> None:
    down = Receiver(free_port(), secrets=[user.get("/v1/webhooks/secret").json()["secret"]])
    job_id = submit_with_hook(user, f"{down.url}/ok")
    wait_for(lambda: (e := events(user, job_id)) and len(e[0]["attempts"]) >= 2, 30, what="failed attempts")
    failed = events(user, job_id)[0]["attempts"]
    assert all(a["status_code"] is None and a["error"].startswith("connection error") for a in failed)
    assert all(a["next_attempt_at"] for a in failed)
    down.start()
    try:
        wait_for(lambda: events(user, job_id)[0]["status"] == "delivered", 30, what="delivery once back")
        time.sleep(2)
        assert len(down.of_type("job.succeeded")) == 1 and down.received[0].valid
        attempts = events(user, job_id)[0]["attempts"]
        assert attempts[-1]["status_code"] == 204 and attempts[-1]["error"] is None
        assert [a["attempt"] for a in attempts] == list(range(1, len(attempts) + 1))
    finally:
        down.stop()


def test_a_301_is_a_failure_and_is_not_followed(user: Client, receiver: Receiver) -> None:
    job_id = submit_with_hook(user, f"{receiver.url}/redirect/{secrets.token_hex(3)}")
    wait_for(lambda: (e := events(user, job_id)) and e[0]["attempts"], 30, what="an attempt")
    first = events(user, job_id)[0]
    assert first["status"] in ("pending", "delivering")
    assert first["attempts"][0]["status_code"] == 301
    assert "redirects are not followed" in first["attempts"][0]["error"]


def test_a_hanging_receiver_is_recorded_as_a_timeout(user: Client, receiver: Receiver) -> None:
    job_id = submit_with_hook(user, f"{receiver.url}/hang/{secrets.token_hex(3)}")
    wait_for(lambda: (e := events(user, job_id)) and e[0]["attempts"], 30, what="an attempt")
    attempt = events(user, job_id)[0]["attempts"][0]
    assert attempt["status_code"] is None and attempt["error"].startswith("timeout")
    assert 1900 <= attempt["latency_ms"] < 4000


def test_410_stops_and_503_honours_retry_after(user: Client, receiver: Receiver) -> None:
    gone = submit_with_hook(user, f"{receiver.url}/gone/{secrets.token_hex(3)}")
    busy = submit_with_hook(user, f"{receiver.url}/busy/{secrets.token_hex(3)}")
    wait_for(lambda: (e := events(user, gone)) and e[0]["status"] == "stopped", 30, what="410 to stop the event")
    wait_for(lambda: (e := events(user, busy)) and e[0]["attempts"], 30, what="a 503 attempt")
    attempt = events(user, busy)[0]["attempts"][0]
    assert attempt["status_code"] == 503
    waited = datetime.fromisoformat(attempt["next_attempt_at"]) - datetime.fromisoformat(attempt["created_at"])
    assert waited.total_seconds() >= 2.5, "Retry-After: 3 beats the 1 s schedule"


def test_started_and_completed_events_and_redelivery_keeps_the_webhook_id(user: Client, receiver: Receiver) -> None:
    token = secrets.token_hex(4)
    job_id = submit_with_hook(user, f"{receiver.url}/ok/{token}", events=["started", "completed"])
    wait_for(
        lambda: len(events(user, job_id)) == 2 and all(e["status"] == "delivered" for e in events(user, job_id)), 30
    )
    listed = {e["type"]: e for e in events(user, job_id)}
    assert set(listed) == {"job.started", "job.succeeded"}
    succeeded = listed["job.succeeded"]

    response = user.post(f"/v1/webhooks/{succeeded['id']}/redeliver")
    assert response.status_code == 202
    wait_for(lambda: len(next(e for e in events(user, job_id) if e["type"] == "job.succeeded")["attempts"]) == 2, 30)
    copies = [r for r in receiver.of_type("job.succeeded") if r.webhook_id == succeeded["id"]]
    assert len(copies) == 2 and all(r.valid for r in copies)
    assert copies[0].payload == copies[1].payload
    assert user.post("/v1/webhooks/msg_unknown/redeliver").status_code == 404


def test_secret_rotation_signs_with_both_secrets_during_the_grace_period(user: Client, receiver: Receiver) -> None:
    old = user.get("/v1/webhooks/secret").json()["secret"]
    rotated = user.post("/v1/webhooks/secret/rotate").json()
    new = rotated["secret"]
    assert new != old and new.startswith("whsec_") and rotated["previous_secret_expires_at"]
    receiver.secrets.append(new)
    token = secrets.token_hex(4)
    job_id = submit_with_hook(user, f"{receiver.url}/ok/{token}")
    wait_for(lambda: (e := events(user, job_id)) and e[0]["status"] == "delivered", 30)
    (delivery,) = [r for r in receiver.of_type("job.succeeded") if r.payload["data"]["id"] == job_id]
    assert len(delivery.headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        assert Webhook(secret).verify(delivery.body, delivery.headers)["data"]["id"] == job_id


def test_rotation_with_no_grace_stops_every_earlier_secret_at_once(
    new_key, api: str, receiver: Receiver, db: Engine
) -> None:
    """After a leak: `{"grace_seconds": 0}` leaves only the new secret signing, the previous two included."""
    user = Client(api, new_key())
    first = user.get("/v1/webhooks/secret").json()["secret"]
    second = user.post("/v1/webhooks/secret/rotate").json()["secret"]  # the deployment's grace: first still signs
    rotated = user.post("/v1/webhooks/secret/rotate", json={"grace_seconds": 0})
    assert rotated.status_code == 200, rotated.text
    third = rotated.json()
    assert third["secret"] not in (first, second) and third["previous_secret_expires_at"] is None
    receiver.secrets.append(third["secret"])
    job_id = submit_with_hook(user, f"{receiver.url}/ok/{secrets.token_hex(4)}")
    wait_for(lambda: (e := events(user, job_id)) and e[0]["status"] == "delivered", 30)
    (delivery,) = [r for r in receiver.of_type("job.succeeded") if r.payload["data"]["id"] == job_id]
    assert len(delivery.headers["webhook-signature"].split(" ")) == 1
    assert Webhook(third["secret"]).verify(delivery.body, delivery.headers)["data"]["id"] == job_id
    assert user.post("/v1/webhooks/secret/rotate", json={}).json()["previous_secret_expires_at"]  # the default grace
    third = user.post("/v1/webhooks/secret/rotate", json={"grace_seconds": 0}).json()
    for bad in ({"grace_seconds": -1}, {"grace_seconds": "60"}, {"grace_seconds": 10**9}, {"grace": 5}, [1]):
        refused = user.post("/v1/webhooks/secret/rotate", json=bad)
        assert (refused.status_code, refused.json()["error"]["code"]) == (422, "validation_error"), bad
    not_json = user.post("/v1/webhooks/secret/rotate", data="grace=0", headers={"Content-Type": "text/plain"})
    assert not_json.status_code == 415
    assert user.get("/v1/webhooks/secret").json()["secret"] == third["secret"]  # refused rotations rotated nothing


def test_cancel_sends_job_canceled(stack: Stack, env: dict[str, str], new_key, receiver: Receiver) -> None:
    idle = {**env, "ASSAY_QUEUE_PREFIX": f"whidle{secrets.token_hex(2)}"}
    _, url = stack.api(**idle)
    user = Client(url, new_key())
    receiver.secrets.append(user.get("/v1/webhooks/secret").json()["secret"])
    job_id = submit_with_hook(user, f"{receiver.url}/ok/{secrets.token_hex(3)}")
    assert user.post(f"/v1/jobs/{job_id}/cancel").json()["cancellation"] == "immediate"
    wait_for(lambda: [r for r in receiver.of_type("job.canceled") if r.payload["data"]["id"] == job_id], 30)


def test_a_job_processed_twice_yields_one_succeeded_event(db: Engine, settings, redis_client) -> None:
    """Worker A's lease expires, B re-runs and finishes; A's late write and a second event are refused."""
    from sqlalchemy import update

    from pipeline.batch import process_jobs
    from store import api as q
    from store.keys import ensure_tenant
    from store.outbox import create_events
    from store.tables import jobs, webhook_events
    from store.worker import Outcome, claim_jobs, finish_jobs
    from tests.integration.helpers import queued_task_args, worker_context

    with db.begin() as conn:
        owner = ensure_tenant(conn, f"twice-{secrets.token_hex(3)}")
        spec = q.JobSpec(
            "sentiment", {"text": "fine"}, webhook={"url": "http://example.test/h", "events": ["completed"]}
        )
        (job_id,) = [r["id"] for r in q.create_jobs(conn, owner, [spec]).rows]
        (first,) = claim_jobs(conn, [job_id], 60)  # worker A
        conn.execute(update(jobs).where(jobs.c.id == job_id).values(status="queued"))  # the sweeper takes it back
    process_jobs(worker_context(settings, db, redis_client), [job_id])  # worker B finishes it
    with db.begin() as conn:
        assert finish_jobs(conn, [Outcome(job_id, first.attempt, result={"label": "late"})]) == {}
        assert create_events(conn, [job_id], 60) == []
        (event_id,) = conn.execute(select(webhook_events.c.id).where(webhook_events.c.job_id == job_id)).scalars()
    published = [ids for ids in queued_task_args(redis_client, settings.webhook_queue) if event_id in ids]
    assert len(published) == 1


def test_worker_killed_after_writing_before_acking_still_one_succeeded_event(
    stack: Stack,
    env: dict[str, str],
    fresh_database,
    receiver: Receiver,
) -> None:
    """The flush's messages are acknowledged only when the whole flush is done: kill the worker after
    its first model batch is written, and Redis redelivers messages whose jobs already finished."""
    url, db = fresh_database()  # its own sweeper: its own database
    with db.begin() as conn:
        key = create_key(conn, "killed").secret
    fast_restore = {
        **env,
        "DATABASE_URL": url,
        "ASSAY_QUEUE_PREFIX": f"whk{secrets.token_hex(3)}",
        "ASSAY_VISIBILITY_TIMEOUT_SECONDS": "12",
        "ASSAY_BROKER_RESTORE_INTERVAL_SECONDS": "1",
        "ASSAY_BROKER_RESTORE_THROTTLE": "1",
    }
    _, api_url = stack.api(**fast_restore)
    user = Client(api_url, key)
    receiver.secrets.append(user.get("/v1/webhooks/secret").json()["secret"])
    victim = stack.worker("wh-victim", **fast_restore)
    long_text = "The parcel came late but the support team sorted it out quickly and politely. " * 16
    body = {
        "jobs": [{"analysis": "sentiment", "input": {"text": f"{i} {long_text}"}} for i in range(128)],
        "webhook": {"url": f"{receiver.url}/ok/{secrets.token_hex(3)}"},
    }
    ids = [job["id"] for job in user.post("/v1/jobs/batch", json=body).json()["data"]]
    wait_for(lambda: victim.log_events("job finished"), 60, interval=0.05, what="a first batch written")
    victim.kill()
    written_before_kill = {r["job_id"] for r in victim.log_events("job finished")}
    assert written_before_kill and len(written_before_kill) < len(ids)

    stack.webhooks(**fast_restore)
    stack.sweeper(**fast_restore)
    rescuer = stack.worker("wh-rescuer", **fast_restore)
    assert set(wait_all_final(db, ids, 120).values()) == {"succeeded"}
    redelivered = wait_for(
        lambda: {i for r in rescuer.log_events("already handled") for i in r["job_ids"]} & written_before_kill,
        90,
        interval=0.5,
        what="Redis to redeliver the unacknowledged messages",
    )
    assert redelivered, "jobs finished before the kill were delivered to a worker a second time"

    def succeeded_deliveries() -> Counter:
        return Counter(
            r.payload["data"]["id"] for r in receiver.of_type("job.succeeded") if r.payload["data"]["id"] in ids
        )

    wait_for(lambda: len(succeeded_deliveries()) == len(ids), 60, what="every job's job.succeeded")
    time.sleep(2)
    assert set(succeeded_deliveries().values()) == {1}, "exactly one job.succeeded per job"


@pytest.mark.parametrize("address", ["127.0.0.1", "10.0.0.1", "169.254.169.254", "[::1]"])
def test_forgery_guard_refuses_private_addresses_at_submission(
    stack: Stack, env: dict[str, str], new_key, address: str
) -> None:
    _, url = stack.api(
        ASSAY_QUEUE_PREFIX="guarded", ASSAY_WEBHOOK_ALLOW_PRIVATE="false", DATABASE_URL=env["DATABASE_URL"]
    )
    user = Client(url, new_key())
    response = user.post(
        "/v1/jobs",
        json={"analysis": "sentiment", "input": {"text": "hi"}, "webhook": {"url": f"http://{address}/hook"}},
    )
    assert response.status_code == 422 and response.json()["error"]["code"] == "webhook_url_forbidden"
    for bad in ("ftp://example.com/x", "http://user:pw@example.com/", "not a url"):
        body = {"analysis": "sentiment", "input": {"text": "hi"}, "webhook": {"url": bad}}
        assert user.post("/v1/jobs", json=body).json()["error"]["code"] == "invalid_webhook_url"


def test_forgery_guard_checks_the_connected_address_too(receiver: Receiver) -> None:
    """Even a URL that passed submission (e.g. DNS changed since) cannot reach a loopback peer."""
    from webhooks.http import WebhookHttp

    def client(allow_private: bool) -> WebhookHttp:
        return WebhookHttp(allow_private=allow_private, per_host=2, deadline_seconds=2, max_body=1024)

    refused = client(allow_private=False).post(f"http://localhost:{receiver.port}/ok", b"{}", {})
    assert refused.status is None and "non-public address" in refused.error
    assert client(allow_private=True).post(f"{receiver.url}/ok", b"{}", {}).status == 204


def test_forgery_guard_refuses_before_connecting_and_tells_no_open_port_from_a_closed_one() -> None:
    """A URL that resolves to a private address at delivery (DNS rebinding: public at submission) was refused
    only after the TCP handshake with the private peer, and the attempt's error, which the tenant reads in
    GET /v1/jobs/{id}/webhooks, said "non-public address" for an open port and "Connection refused" for a
    closed one: a port scanner of the deliverer's network. The addresses are checked before connecting."""
    import socket

    from webhooks.http import WebhookHttp

    http = WebhookHttp(allow_private=False, per_host=2, deadline_seconds=2, max_body=1024)
    with socket.create_server(("127.0.0.1", 0)) as listener:  # an internal service nobody may reach
        listener.settimeout(0.5)
        open_port, closed_port = listener.getsockname()[1], free_port()
        to_open = http.post(f"http://localhost:{open_port}/", b"{}", {})
        to_closed = http.post(f"http://localhost:{closed_port}/", b"{}", {})
        with pytest.raises(TimeoutError):  # nothing reached the service: no handshake, not even a SYN
            listener.accept()
    assert to_open.status is None and "non-public address" in (to_open.error or ""), to_open
    assert to_open.error == to_closed.error, (to_open.error, to_closed.error)


def _read_whole_request(conn) -> None:
    """Read headers and the Content-Length body: closing a socket with unread bytes sends a reset, which the
    client sees instead of the answer when the body arrived in a second segment."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65_536)
        if not chunk:
            return
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lengths = [line.split(b":", 1)[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
    length = int(lengths[0]) if lengths else 0
    while len(body) < length:
        chunk = conn.recv(65_536)
        if not chunk:
            return
        body += chunk


def test_a_receiver_cannot_wedge_the_attempt_records_with_a_nul_in_its_answer(db: Engine, settings) -> None:
    """A 302 whose Location holds a NUL byte put the NUL into the attempt's error; the recorder writes the
    attempts of many events (every tenant's) in one statement, PostgreSQL refused it (jsonb takes no
    \\u0000), and the recorder retried that statement for ever: no attempt of that webhook worker was
    recorded again, and every event it had sent went back to its receiver once its lock ran out. What a
    receiver said is stored as printable text, bounded."""
    import socket
    import threading

    from store.deliveries import AttemptRecord, record_attempts
    from webhooks.attempt import attempt_delivery
    from webhooks.http import WebhookHttp

    with socket.create_server(("127.0.0.1", 0)) as server:

        def answer() -> None:
            conn, _ = server.accept()
            with conn:
                _read_whole_request(conn)
                conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: /x\x00\x1b[2J" + b"y" * 5000 + b"\r\n\r\n")

        threading.Thread(target=answer, daemon=True).start()
        url = f"http://127.0.0.1:{server.getsockname()[1]}/hook"
        http = WebhookHttp(allow_private=True, per_host=2, deadline_seconds=3, max_body=1024)
        result = attempt_delivery(
            settings, http, event_id="evt_nul", url=url, payload={}, secrets=["whsec_" + "A" * 32], attempt=1
        )
    assert result.status_code == 302 and result.error is not None
    assert result.error.isprintable() and len(result.error) <= 1000, result.error
    with db.begin() as conn:  # raised DataError before: the whole batch of records with it
        record_attempts(
            conn,
            [AttemptRecord("evt_nul", 1, url, result.outcome, 302, result.latency_ms, result.error, None)],
        )
