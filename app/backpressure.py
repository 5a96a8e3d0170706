"""Back-pressure on queue depth: refuse new work while a queue is past its bound, rather than grow it forever.

Depth is LLEN of the family's queue, re-read at most every 250 ms per process; between reads each
admitted request adds the messages it is about to publish to the cached figure, so a burst of
concurrent requests inside one window cannot all be admitted on the same stale depth. If Redis cannot be
asked, the check fails open and uses the last depth it read while that is less than 30 s old:
intake needs only PostgreSQL, accepted jobs wait there, and the sweeper publishes them once the
broker is back. A broker outage therefore never turns a submission into an error.
"""

from __future__ import annotations

import logging
import time

import redis

from app.errors import ApiError
from app.resources import Resources
from broker.inflight import waiting
from broker.publish import queue_for

log = logging.getLogger(__name__)

DEPTH_CACHE_SECONDS = 0.25
STALE_DEPTH_SECONDS = 30.0
_depths: dict[str, tuple[int, float]] = {}


def queue_depth(svc: Resources, queue: str) -> int:
    """The queue's depth, cached briefly; the last known one (or 0) when Redis does not answer."""
    now = time.monotonic()
    cached = _depths.get(queue)
    if cached and now - cached[1] < DEPTH_CACHE_SECONDS:
        return cached[0]
    try:
        depth = waiting(svc.redis, queue)
    except redis.RedisError:
        log.warning("queue depth unavailable; admitting", extra={"queue": queue})
        return cached[0] if cached and now - cached[1] < STALE_DEPTH_SECONDS else 0
    _depths[queue] = (depth, now)
    return depth


def check_queue_depth(svc: Resources, analyses: set[str], adding: int) -> None:
    """503 `queue_full` with Retry-After if adding `adding` messages would pass `max_queue_depth`."""
    for queue in {queue_for(svc.settings, svc.catalog, a) for a in analyses}:
        depth = queue_depth(svc, queue)
        if depth + adding > svc.settings.max_queue_depth:
            raise ApiError(
                503,
                "queue_full",
                f"queue {queue} holds {depth} messages; try again shortly",
                {"queue": queue, "depth": depth, "limit": svc.settings.max_queue_depth},
                headers={"Retry-After": "5"},
            )
        _depths[queue] = (depth + adding, _depths.get(queue, (0, time.monotonic()))[1])
