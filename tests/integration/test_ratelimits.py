"""Per-key rate limits, the cap on open long-polls and the per-tenant queued-job quota, on a real gunicorn.

One API process with low limits and a queue prefix of its own that no worker serves, so submitted jobs
stay queued and the quota fills. Limits are shared across gunicorn's two workers through Redis.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading
import time

import pytest
import requests
from sqlalchemy import Engine

from store.keys import tenant_for_key
from store.limits import set_overrides
from tests.support import Client, Stack, free_port

REQUESTS = 100


@pytest.fixture(scope="module")
def limited(stack: Stack) -> str:
    _, url = stack.api(
        ASSAY_QUEUE_PREFIX=f"rl{secrets.token_hex(3)}",
        ASSAY_RATE_REQUESTS=str(REQUESTS),
        ASSAY_RATE_REQUESTS_WINDOW_SECONDS="60",
        ASSAY_RATE_JOBS_PER_MINUTE="20",
        ASSAY_TENANT_MAX_QUEUED_JOBS="5",
        ASSAY_MAX_OPEN_WAITS_PER_KEY="2",
        ASSAY_TENANT_LIMITS_CACHE_SECONDS="0",
    )
    return url


def _texts(n: int, tag: str) -> list[str]:
    return [f"{tag} {i} {secrets.token_hex(4)}" for i in range(n)]


def test_the_101st_request_inside_the_window_is_429_with_retry_after(limited: str, new_key) -> None:
    user, other = Client(limited, new_key()), Client(limited, new_key())
    remaining = []
    for _ in range(REQUESTS):
        answer = user.get("/v1/jobs", params={"limit": 1})
        assert answer.status_code == 200, answer.text
        remaining.append(int(answer.headers["RateLimit-Remaining"]))
        assert answer.headers["RateLimit-Limit"] == str(REQUESTS)
    assert remaining == sorted(remaining, reverse=True) and remaining[-1] == 0, remaining

    refused = user.get("/v1/jobs", params={"limit": 1})
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "rate_limited"
    retry = int(refused.headers["Retry-After"])
    assert 1 <= retry <= 60
    assert refused.headers["RateLimit-Remaining"] == "0"
    assert refused.headers["RateLimit-Policy"] == f"{REQUESTS};w=60"
    assert other.get("/v1/jobs", params={"limit": 1}).status_code == 200, "another key was limited too"


def test_tenant_at_its_queued_quota_gets_429_and_another_tenant_still_202(limited: str, new_key, db: Engine) -> None:
    key_a = new_key()
    a, b = Client(limited, key_a), Client(limited, new_key())
    a.submit_batch(_texts(5, "a"))
    refused = a.post("/v1/jobs", json={"analysis": "sentiment", "input": {"text": "one too many"}})
    assert refused.status_code == 429, refused.text
    error = refused.json()["error"]
    assert error["code"] == "tenant_queue_full" and error["details"]["quota"] == 5, error
    assert int(refused.headers["Retry-After"]) >= 1
    assert b.post("/v1/jobs", json={"analysis": "sentiment", "input": {"text": "tenant B"}}).status_code == 202

    with db.begin() as conn:  # the operator raises A's quota in the database: no restart
        set_overrides(conn, tenant_for_key(conn, key_a), {"tenant_max_queued_jobs": 6})
    assert a.post("/v1/jobs", json={"analysis": "sentiment", "input": {"text": "room now"}}).status_code == 202
    again = a.post("/v1/jobs", json={"analysis": "sentiment", "input": {"text": "and full again"}})
    assert again.status_code == 429 and again.json()["error"]["details"]["quota"] == 6, again.text


def test_batch_entries_count_as_jobs_per_minute(limited: str, new_key, db: Engine) -> None:
    key = new_key()
    with db.begin() as conn:
        set_overrides(conn, tenant_for_key(conn, key), {"tenant_max_queued_jobs": 1000})
    user = Client(limited, key)
    assert len(user.submit_batch(_texts(15, "burst"))) == 15
    refused = user.post(
        "/v1/jobs/batch", json={"jobs": [{"analysis": "sentiment", "input": {"text": t}} for t in _texts(10, "more")]}
    )
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["details"]["kind"] == "jobs"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert len(user.submit_batch(_texts(5, "fits"))) == 5, "the refused batch was counted"


def test_requests_refused_for_the_tenants_quota_spend_none_of_the_keys_jobs_per_minute(
    limited: str, new_key, db: Engine
) -> None:
    """A client retrying on 429 `tenant_queue_full` (or a 413 batch over the quota) was charged each refused
    request's jobs against the key's 20 jobs a minute: once the queue drained it got 429 `rate_limited` for
    jobs it never created."""
    key = new_key()
    user = Client(limited, key)
    assert len(user.submit_batch(_texts(5, "fill"))) == 5  # the tenant's quota (5) is full
    over = user.post(
        "/v1/jobs/batch", json={"jobs": [{"analysis": "sentiment", "input": {"text": t}} for t in _texts(6, "q")]}
    )
    assert over.status_code == 413 and over.json()["error"]["details"]["kind"] == "tenant_queued_jobs", over.text
    for text in _texts(10, "retry"):
        refused = user.post("/v1/jobs", json={"analysis": "sentiment", "input": {"text": text}})
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "tenant_queue_full", refused.text
    with db.begin() as conn:  # room again: the key has sent 5 jobs this minute, so 15 more fit its rate
        set_overrides(conn, tenant_for_key(conn, key), {"tenant_max_queued_jobs": 1000})
    accepted = user.post(
        "/v1/jobs/batch", json={"jobs": [{"analysis": "sentiment", "input": {"text": t}} for t in _texts(15, "ok")]}
    )
    assert accepted.status_code == 202, accepted.text


def test_a_request_larger_than_a_limit_can_ever_allow_is_413_not_a_429_to_retry(limited: str, new_key) -> None:
    """More jobs in one request than the tenant may have queued (5), or than the key may send in a
    whole window (20 a minute), can never pass: a 429 with Retry-After had clients retry it for minutes."""
    user = Client(limited, new_key())
    over_quota = user.post(
        "/v1/jobs/batch", json={"jobs": [{"analysis": "sentiment", "input": {"text": t}} for t in _texts(6, "q")]}
    )
    assert over_quota.status_code == 413, over_quota.text
    assert "Retry-After" not in over_quota.headers
    error = over_quota.json()["error"]
    assert error["code"] == "batch_too_large"
    assert error["details"] == {"limit": 5, "actual": 6, "kind": "tenant_queued_jobs"}, error

    over_rate = user.post(
        "/v1/jobs/batch", json={"jobs": [{"analysis": "sentiment", "input": {"text": t}} for t in _texts(21, "r")]}
    )
    assert over_rate.status_code == 413, over_rate.text
    assert over_rate.json()["error"]["details"] == {"limit": 20, "actual": 21, "kind": "jobs"}
    assert len(user.submit_batch(_texts(5, "fits"))) == 5, "no job of the refused requests was queued"


def test_open_long_polls_are_capped_per_key(limited: str, new_key) -> None:
    key = new_key()
    user = Client(limited, key)
    (job,) = user.submit_batch(["waits forever: no worker serves this prefix"])
    held: list[int] = []

    def hold() -> None:
        held.append(user.get(f"/v1/jobs/{job['id']}", params={"wait": 3}).status_code)

    threads = [threading.Thread(target=hold) for _ in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(0.8)
    third = requests.get(
        f"{limited}/v1/jobs/{job['id']}", params={"wait": 3}, headers={"Authorization": f"Bearer {key}"}, timeout=10
    )
    assert third.status_code == 429 and third.json()["error"]["code"] == "too_many_open", third.text
    for thread in threads:
        thread.join()
    assert held == [200, 200]
    assert user.get(f"/v1/jobs/{job['id']}", params={"wait": 0.2}).status_code == 200, "slots were not released"


def test_an_operator_sets_a_tenants_limits_from_the_command_line(
    limited: str, new_key, session_env: dict[str, str]
) -> None:
    name = f"cli-{secrets.token_hex(4)}"
    user = Client(limited, new_key(name))
    env = {**os.environ, **session_env}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "store.cli", "limits", *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)

    done = cli("set", "--tenant", name, "--tenant-max-queued-jobs", "2", "--rate-requests", "1000")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["overrides"] == {"tenant_max_queued_jobs": 2, "rate_requests": 1000}
    assert len(user.submit_batch(_texts(2, "cli"))) == 2
    refused = user.post("/v1/jobs", json={"analysis": "sentiment", "input": {"text": "third"}})
    assert refused.status_code == 429 and refused.json()["error"]["details"]["quota"] == 2, refused.text
    assert refused.headers["RateLimit-Limit"] == "1000"

    cleared = cli("set", "--tenant", name, "--tenant-max-queued-jobs", "0")
    assert json.loads(cleared.stdout)["overrides"] == {"rate_requests": 1000}
    assert cli("show", "--tenant", "no-such-tenant").returncode == 1


def test_without_redis_limits_admit_and_the_event_stream_is_a_503(stack: Stack, new_key) -> None:
    """A Redis outage must never turn into refusals or 500s: intake needs only PostgreSQL."""
    _, url = stack.api(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", ASSAY_RATE_REQUESTS="2")
    user = Client(url, new_key())
    for _ in range(4):  # past the limit of 2: not counted, so not refused
        listed = user.get("/v1/jobs", params={"limit": 1})
        assert listed.status_code == 200, listed.text
        assert "RateLimit-Remaining" not in listed.headers
    assert user.post("/v1/jobs", json={"analysis": "sentiment", "input": {"text": "no redis"}}).status_code == 202
    stream = user.get("/v1/events", timeout=10)
    assert stream.status_code == 503 and stream.json()["error"]["code"] == "events_unavailable", stream.text
    assert "Retry-After" in stream.headers


def test_requests_refused_for_a_full_queue_spend_none_of_the_keys_jobs_per_minute(
    stack: Stack, new_key, redis_client
) -> None:
    """A client retrying on 503 `queue_full` as told (Retry-After) was charged each refused request's jobs:
    once the queue drained it got 429 `rate_limited` for jobs it never created."""
    prefix = f"qf{secrets.token_hex(3)}"
    _, url = stack.api(ASSAY_QUEUE_PREFIX=prefix, ASSAY_MAX_QUEUE_DEPTH="3", ASSAY_RATE_JOBS_PER_MINUTE="20")
    user = Client(url, new_key())
    accepted, refusal = 0, None
    for text in _texts(10, "fill"):  # no worker serves this prefix: each job's message stays in the queue
        answer = user.post("/v1/jobs", json={"analysis": "sentiment", "input": {"text": text}})
        if answer.status_code == 503:
            refusal = answer
            break
        assert answer.status_code == 202, answer.text
        accepted += 1
    assert refusal is not None and refusal.json()["error"]["code"] == "queue_full", (accepted, refusal)
    for text in _texts(25, "retry"):
        refused = user.post("/v1/jobs", json={"analysis": "sentiment", "input": {"text": text}})
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "queue_full", refused.text
    redis_client.delete(f"{prefix}.text")  # the queue drains (the jobs stay queued in PostgreSQL)
    time.sleep(0.5)  # past the cached depth
    room = 20 - accepted
    batch = user.post(
        "/v1/jobs/batch", json={"jobs": [{"analysis": "sentiment", "input": {"text": t}} for t in _texts(room, "ok")]}
    )
    assert batch.status_code == 202, batch.text
