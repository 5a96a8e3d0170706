"""Job-finished notifications over Redis pub/sub, so `GET /v1/jobs/{id}?wait=N` holds no DB connection.

Not the broker queues: channels `assay:job:<id>` that long-polls subscribe to and the job-finished path
publishes on, after commit. Where the writer has the final job document at hand (the worker's result
write returns it), the message carries it, so the woken long-poll answers without reading the row
again; otherwise, or past `DOCUMENT_MAX_BYTES`, the message is `done` and the waiter reads PostgreSQL.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from typing import Any

import redis

log = logging.getLogger(__name__)

CHANNEL = "assay:job:{}"
DONE = b"done"
#: Larger documents (long transcripts, call-record reports) are not copied to every waiter: they read the row.
DOCUMENT_MAX_BYTES = 16_384


def notify_finished(client: redis.Redis, finished: Iterable[tuple[str, dict[str, Any] | None]]) -> bool:
    """Tell waiters these jobs reached a final state (after the write committed): (job_id, its final
    document or None) pairs. True if Redis timed out (it may be hung: the caller stops asking for a while).

    Best effort: if Redis is unreachable, a waiter simply answers at its deadline, with the
    state it reads from PostgreSQL then.
    """
    try:
        pipe = client.pipeline(transaction=False)
        for job_id, document in finished:
            pipe.publish(CHANNEL.format(job_id), _payload(document))
        pipe.execute()
    except redis.RedisError as exc:
        log.warning("job notifications not sent", exc_info=True)
        return isinstance(exc, redis.TimeoutError)
    return False


def _payload(document: dict[str, Any] | None) -> bytes:
    """The document as JSON when it is small; `done` otherwise (and for anything JSON cannot carry)."""
    if document is None:
        return DONE
    try:
        payload = json.dumps(document, separators=(",", ":")).encode()
    except (TypeError, ValueError):
        log.warning("job document not serialisable; notifying without it", exc_info=True)
        return DONE
    return payload if len(payload) <= DOCUMENT_MAX_BYTES else DONE


def _document(data: bytes) -> dict[str, Any] | None:
    """The document a notification carried; None for `done` or anything that is not one (the waiter reads the row)."""
    if data == DONE:
        return None
    try:
        document = json.loads(data)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


class FinishWaiter:
    """Subscribe first, then check the database, then wait: no notification can slip between."""

    def __init__(self, client: redis.Redis, job_id: str) -> None:
        self._pubsub = client.pubsub(ignore_subscribe_messages=True)
        self._pubsub.subscribe(CHANNEL.format(job_id))
        self.document: dict[str, Any] | None = None  # the final document, when the notification carried it

    def wait(self, timeout: float) -> bool:
        """True once a notification arrived, False at the deadline."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            message = self._pubsub.get_message(timeout=min(left, 1.0))
            if message is not None:
                self.document = _document(message["data"])
                return True
        return False

    def close(self) -> None:
        self._pubsub.close()

    def __enter__(self) -> FinishWaiter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
