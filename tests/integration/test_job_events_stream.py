"""The tenants' event streams on a real Redis: one command per tenant, entries as the SSE reader expects."""

from __future__ import annotations

import secrets

import redis

from broker.job_events import JobEvent, channel, first_id, last_id, read_after, record_events


def _events(tenant: str, count: int) -> list[JobEvent]:
    return [JobEvent(tenant, f"job_{i}", "sentiment", "queued", f"2026-12-07T09:00:0{i}Z") for i in range(count)]


def test_each_tenant_gets_its_own_events_in_order_and_one_wake_up(redis_client: redis.Redis) -> None:
    prefix = f"t{secrets.token_hex(3)}"
    a, b = "ten_a", "ten_b"
    failed = JobEvent(a, "job_9", "sentiment", "failed", "2026-12-07T09:00:09Z", error_code="input_invalid")
    mixed = [*_events(a, 3), *_events(b, 2), failed]
    with redis_client.pubsub() as pubsub:
        pubsub.subscribe(channel(prefix))
        pubsub.get_message(timeout=1)  # the subscription's confirmation
        record_events(redis_client, prefix, window=100, keep_seconds=60, events=mixed)
        woken = {pubsub.get_message(timeout=1)["data"] for _ in range(2)}
    assert woken == {a.encode(), b.encode()}
    seen_a = read_after(redis_client, prefix, a, "0", 100)
    assert [e["job_id"] for _, e in seen_a] == ["job_0", "job_1", "job_2", "job_9"]
    assert seen_a[-1][1] == {
        "job_id": "job_9",
        "analysis": "sentiment",
        "status": "failed",
        "at": "2026-12-07T09:00:09Z",
        "error_code": "input_invalid",
    }
    assert "error_code" not in seen_a[0][1]
    assert [e["job_id"] for _, e in read_after(redis_client, prefix, b, "0", 100)] == ["job_0", "job_1"]
    ids = [entry_id for entry_id, _ in seen_a]
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-")))) and len(set(ids)) == 4
    assert first_id(redis_client, prefix, a) == ids[0] and last_id(redis_client, prefix, a) == ids[-1]
    assert [e["job_id"] for _, e in read_after(redis_client, prefix, a, ids[1], 100)] == ["job_2", "job_9"]
    assert 0 < redis_client.ttl(f"{prefix}:events:{a}") <= 60


def test_the_stream_stays_near_its_window(redis_client: redis.Redis) -> None:
    prefix = f"t{secrets.token_hex(3)}"
    for _ in range(30):
        record_events(redis_client, prefix, window=10, keep_seconds=60, events=_events("ten", 9))
    kept = redis_client.xlen(f"{prefix}:events:ten")
    assert 10 <= kept < 270  # approximate trimming (MAXLEN ~) drops whole nodes of 100 entries, never below 10
