"""Admission by expected wait: a family's backlog is bounded by the time its workers need for it, measured.

A real worker runs full batches (and so reports its pace to Redis); once it stops, submissions are
admitted only until the queued jobs would need more than `ASSAY_MAX_QUEUE_WAIT_SECONDS` at that pace,
then answered 503 `queue_full` with a Retry-After; a worker that drains the backlog opens the door again.
"""

from __future__ import annotations

import secrets

import redis

from tests.integration.helpers import wait_all_final
from tests.support import Client, Stack, wait_for

LIMIT_SECONDS = 1.0


def test_backlog_is_bounded_by_the_workers_measured_pace(stack: Stack, new_key, db, redis_client: redis.Redis) -> None:
    prefix = f"adm{secrets.token_hex(3)}"
    env = {"ASSAY_QUEUE_PREFIX": prefix, "ASSAY_MAX_QUEUE_WAIT_SECONDS": str(LIMIT_SECONDS)}
    worker = stack.worker("admission", **env)
    _, url = stack.api(**env)
    client = Client(url, new_key())

    warm = [job["id"] for job in client.submit_batch([f"warm-up ticket {i}" for i in range(256)])]
    assert set(wait_all_final(db, warm, timeout=120).values()) == {"succeeded"}
    reported = redis_client.hgetall(f"{prefix}:capacity:text")
    assert reported, "the worker reported no pace after full batches"
    pace = sum(float(value.split()[0]) for value in reported.values())
    assert pace > 0

    worker.stop(15)
    admitted, refusal = 0, None
    for round_ in range(400):
        body = {"jobs": [{"analysis": "sentiment", "input": {"text": f"r{round_} t{i}"}} for i in range(20)]}
        response = client.post("/v1/jobs/batch", json=body)
        if response.status_code == 503:
            refusal = response
            break
        assert response.status_code == 202, response.text
        admitted += 20
    print(f"admission: {admitted} jobs admitted at {pace:.0f} jobs/s before 503 (limit {LIMIT_SECONDS} s)")
    assert refusal is not None, f"{admitted} jobs admitted; the backlog was never bounded at {pace:.0f} jobs/s"
    error = refusal.json()["error"]
    assert error["code"] == "queue_full", error
    assert error["details"]["expected_wait_seconds"] >= LIMIT_SECONDS, error  # rounded to 0.1 s
    assert 1 <= int(refusal.headers["Retry-After"]) <= 60
    # admitted while the figure said the backlog fit in the limit; one cached second of slack at most
    assert admitted <= pace * LIMIT_SECONDS * 1.5 + 40, (admitted, pace)

    stack.worker("admission-2", **env)
    again = {"analysis": "sentiment", "input": {"text": "again"}}
    wait_for(lambda: client.post("/v1/jobs", json=again).status_code == 202, 60, interval=0.5, what="admission again")


def test_stats_shows_the_depth_of_each_queue(stack: Stack, new_key, redis_client: redis.Redis) -> None:
    """No worker: the published messages wait, and /v1/stats counts them in the family's queue (it read
    `<prefix>.<prefix>.text`, a queue nobody uses, and showed 0 whatever the backlog)."""
    prefix = f"st{secrets.token_hex(3)}"
    _, url = stack.api(ASSAY_QUEUE_PREFIX=prefix)
    client = Client(url, new_key())
    client.submit_batch([f"waiting ticket {i}" for i in range(3)])
    client.submit("one more")
    waiting = redis_client.llen(f"{prefix}.text")
    assert waiting >= 2, waiting

    stats = client.get("/v1/stats")
    assert stats.status_code == 200, stats.text
    assert stats.json()["queue_depth"][f"{prefix}.text"] == waiting, stats.json()


def test_a_workers_pace_counts_whatever_its_hosts_clock_says(settings, redis_client: redis.Redis, monkeypatch) -> None:
    """The report was stamped with the worker's clock and judged fresh by the API's: a worker host 40 s
    behind looked dead from the moment it reported, and admission fell back to the depth bound."""
    import time

    from broker.capacity import family_capacity, report_capacity

    scoped = settings.model_copy(update={"queue_prefix": f"clk{secrets.token_hex(3)}"})
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() - 40)  # the worker's host
    report_capacity(redis_client, scoped, "text", "worker-behind", 123.0)
    monkeypatch.setattr(time, "time", lambda: real() + 40)  # the API's host, the other way
    assert family_capacity(redis_client, scoped, "text") == 123.0
