"""Back-pressure: refuse new work while a queue is past its bound, rather than grow it forever.

Two bounds, each a 503 `queue_full` with Retry-After:
- **expected wait** (`max_queue_wait_seconds`): the family's queued jobs (PostgreSQL, the partial
  index on queued rows) divided by the jobs per second its live workers report when busy
  (broker.capacity). A count of messages cannot say how long a backlog is — the same 20,000 jobs are
  one minute for a GPU and five for a CPU — and a backlog the workers cannot clear soon only makes
  every job late and every recovery (a worker or broker restart) longer. With no worker reporting,
  this bound is not applied: accepted jobs wait in PostgreSQL for one to start.
- **depth** (`max_queue_depth`): LLEN of the family's queue, a hard ceiling on broker memory.

Both figures are cached per process (depth 250 ms, backlog and capacity 1 s); between reads each
admitted request adds what it is about to enqueue, so a burst of concurrent requests inside one
window cannot all be admitted on the same stale figure. If Redis or PostgreSQL cannot be asked, the
check fails open on the last figure it read while that is less than 30 s old: intake needs only
PostgreSQL, accepted jobs wait there, and the sweeper publishes them once the broker is back. A
broker outage therefore never turns a submission into an error. A figure whose read failed is not
asked for again for RETRY_FAILED_SECONDS: a Redis that hangs (SIGSTOP, a partition) costs one request
its timeout, not every request two of them.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis
from sqlalchemy.exc import SQLAlchemyError

from app.errors import ApiError
from app.resources import Resources
from broker.capacity import family_capacity
from broker.inflight import waiting
from store.api import queued_jobs

log = logging.getLogger(__name__)

DEPTH_CACHE_SECONDS = 0.25
BACKLOG_CACHE_SECONDS = 1.0
STALE_SECONDS = 30.0
RETRY_FAILED_SECONDS = 5.0
MAX_RETRY_AFTER_SECONDS = 60


@dataclass
class _Reading:
    value: float | None
    at: float


_readings: dict[tuple[str, str], _Reading] = {}
_failed_until: dict[tuple[str, str], float] = {}  # a read that failed is not tried again before then


def _read(what: str, family: str, fresh_for: float, fetch: Callable[[], float | None]) -> float | None:
    """A cached figure; on failure the last one read within STALE_SECONDS, else None."""
    now = time.monotonic()
    cached = _readings.get((what, family))
    if cached and now - cached.at < fresh_for:
        return cached.value
    stale = cached.value if cached and now - cached.at < STALE_SECONDS else None
    if now < _failed_until.get((what, family), 0.0):
        return stale
    try:
        value = fetch()
    except (redis.RedisError, SQLAlchemyError):
        _failed_until[(what, family)] = time.monotonic() + RETRY_FAILED_SECONDS
        log.warning("admission figure unavailable; admitting", extra={"figure": what, "family": family})
        return stale
    _readings[(what, family)] = _Reading(value, now)
    return value


def _add(what: str, family: str, amount: int) -> None:
    """Count what this request enqueues into the cached figure until the next read."""
    cached = _readings.get((what, family))
    if cached and cached.value is not None:
        cached.value += amount


def queue_depth(svc: Resources, family: str) -> int:
    """Messages waiting in the family's queue (0 when unknown)."""
    queue = svc.settings.queue_name(family)
    return int(_read("depth", family, DEPTH_CACHE_SECONDS, lambda: waiting(svc.redis, queue)) or 0)


def expected_wait(svc: Resources, family: str) -> float | None:
    """Seconds the family's queued jobs need at its workers' pace; None when no worker reported."""
    capacity = _read(
        "capacity", family, BACKLOG_CACHE_SECONDS, lambda: family_capacity(svc.redis, svc.settings, family)
    )
    if not capacity:
        return None
    analyses = [name for name, config in svc.catalog.items() if config.family == family]

    def count() -> float:
        with svc.db.connect() as conn:
            return queued_jobs(conn, analyses)

    backlog = _read("backlog", family, BACKLOG_CACHE_SECONDS, count)
    return None if backlog is None else backlog / capacity


def _full(family: str, message: str, details: dict[str, object], retry_after: float) -> ApiError:
    seconds = min(MAX_RETRY_AFTER_SECONDS, max(1, math.ceil(retry_after)))
    return ApiError(503, "queue_full", message, {"family": family, **details}, headers={"Retry-After": str(seconds)})


def check_queue_depth(svc: Resources, jobs_by_analysis: dict[str, int], messages: int) -> Callable[[], None]:
    """503 `queue_full` if these jobs (`messages` broker messages) would pass a family's bounds; else what
    counts them into the cached figures once the request is admitted after all.

    Apart, so a request refused next (the tenant's quota, the key's jobs a minute) adds nothing: a burst
    of rate-limited requests would otherwise fill the cached depth with messages never sent and refuse
    other tenants' submissions until the next read."""
    families: dict[str, int] = {}
    for analysis, count in jobs_by_analysis.items():
        family = svc.catalog[analysis].family
        families[family] = families.get(family, 0) + count
    settings = svc.settings
    for family in families:
        depth = queue_depth(svc, family)
        if depth + messages > settings.max_queue_depth:
            raise _full(
                family,
                f"the {family} queue holds {depth} messages; try again shortly",
                {"queue": settings.queue_name(family), "depth": depth, "limit": settings.max_queue_depth},
                5,
            )
        wait = expected_wait(svc, family)
        if wait is not None and wait > settings.max_queue_wait_seconds:
            raise _full(
                family,
                f"the {family} queue needs about {wait:.0f} s to clear; try again shortly",
                {"expected_wait_seconds": round(wait, 1), "limit_seconds": settings.max_queue_wait_seconds},
                wait - settings.max_queue_wait_seconds,
            )

    def count_in() -> None:
        for family, adding in families.items():
            _add("depth", family, messages)
            _add("backlog", family, adding)

    return count_in
