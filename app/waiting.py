"""Long-polls: answer when a job is final, or at the deadline, holding no database connection meanwhile.

Redis pub/sub wakes the waiter (the job-finished path publishes after commit), and where the message
carries the final document it is the answer: no second read of the row. If Redis cannot be
reached, or drops the subscription mid-wait, the wait degrades to re-reading PostgreSQL once a
second until the deadline: slower, never an error.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import redis

from broker.job_pubsub import FinishWaiter
from store.tables import FINAL_STATUSES

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0


def wait_until_final(
    client: redis.Redis, job_id: str, load: Callable[[], dict[str, Any]], seconds: float
) -> dict[str, Any]:
    """The job document once final, or as it is after `seconds`."""
    job = load()
    if not seconds or job["status"] in FINAL_STATUSES:
        return job
    deadline = time.monotonic() + seconds
    try:
        with FinishWaiter(client, job_id) as waiter:
            job = load()  # re-check after subscribing: no notification can slip by
            if job["status"] not in FINAL_STATUSES:
                # What is left of the deadline: the loads before it may have waited on a slow database.
                if waiter.wait(max(0.0, deadline - time.monotonic())) and waiter.document is not None:
                    return waiter.document
                return load()
            return job
    except redis.RedisError:
        log.warning("long-poll without Redis: polling PostgreSQL", extra={"job_id": job_id})
    while (left := deadline - time.monotonic()) > 0 and job["status"] not in FINAL_STATUSES:
        time.sleep(min(POLL_SECONDS, left))
        job = load()
    return job
