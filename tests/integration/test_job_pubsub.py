"""Job-finished notifications on a real Redis: a waiter hears the final document, or only `done`."""

from __future__ import annotations

import secrets

import redis

from broker.job_pubsub import CHANNEL, DOCUMENT_MAX_BYTES, FinishWaiter, notify_finished


def _job_id() -> str:
    return f"job_{secrets.token_hex(8)}"


def test_a_waiter_receives_the_final_document_with_the_notification(redis_client: redis.Redis) -> None:
    job_id = _job_id()
    document = {"id": job_id, "status": "succeeded", "result": {"label": "positive", "score": 0.91}}
    with FinishWaiter(redis_client, job_id) as waiter:
        notify_finished(redis_client, [(job_id, document), (_job_id(), None)])
        assert waiter.wait(5)
        assert waiter.document == document


def test_without_a_document_or_past_the_size_limit_the_waiter_reads_the_row(redis_client: redis.Redis) -> None:
    bare, large = _job_id(), _job_id()
    huge = {"id": large, "status": "succeeded", "result": {"text": "x" * DOCUMENT_MAX_BYTES}}
    with FinishWaiter(redis_client, bare) as plain, FinishWaiter(redis_client, large) as big:
        notify_finished(redis_client, [(bare, None), (large, huge)])
        assert plain.wait(5) and big.wait(5)
        assert plain.document is None and big.document is None


def test_a_waiter_nobody_notifies_times_out(redis_client: redis.Redis) -> None:
    with FinishWaiter(redis_client, _job_id()) as waiter:
        notify_finished(redis_client, [(_job_id(), {"status": "succeeded"})])
        assert not waiter.wait(0.3)
        assert waiter.document is None


def test_a_message_that_is_not_a_document_wakes_the_waiter_without_one(redis_client: redis.Redis) -> None:
    """An older worker's `done`, or anything else on the channel: the waiter wakes and reads the row."""
    job_id = _job_id()
    with FinishWaiter(redis_client, job_id) as waiter:
        redis_client.publish(CHANNEL.format(job_id), b"not json {")
        assert waiter.wait(5)
        assert waiter.document is None
    unserialisable = _job_id()
    with FinishWaiter(redis_client, unserialisable) as waiter:
        notify_finished(redis_client, [(unserialisable, {"when": object()})])
        assert waiter.wait(5)
        assert waiter.document is None
