"""Job-finished notifications over Redis pub/sub, so `GET /v1/jobs/{id}?wait=N` holds no DB connection.

Not the broker queues: channels `assay:job:<id>` that long-polls subscribe to and the job-finished path
publishes on, after commit.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

import redis

log = logging.getLogger(__name__)

CHANNEL = "assay:job:{}"


def notify_finished(client: redis.Redis, job_ids: Iterable[str]) -> None:
    """Tell waiters these jobs reached a final state (after the write committed).

    Best effort: if Redis is unreachable, a waiter simply answers at its deadline, with the
    state it reads from PostgreSQL then.
    """
    try:
        pipe = client.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.publish(CHANNEL.format(job_id), "done")
        pipe.execute()
    except redis.RedisError:
        log.warning("job notifications not sent", exc_info=True)


class FinishWaiter:
    """Subscribe first, then check the database, then wait: no notification can slip between."""

    def __init__(self, client: redis.Redis, job_id: str) -> None:
        self._pubsub = client.pubsub(ignore_subscribe_messages=True)
        self._pubsub.subscribe(CHANNEL.format(job_id))

    def wait(self, timeout: float) -> bool:
        """True once a notification arrived, False at the deadline."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if self._pubsub.get_message(timeout=min(left, 1.0)) is not None:
                return True
        return False

    def close(self) -> None:
        self._pubsub.close()

    def __enter__(self) -> FinishWaiter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
