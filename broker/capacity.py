"""What the inference workers can do: each worker's busy throughput per model family, kept in Redis.

Admission (app/backpressure.py) bounds a queue by the *time* its backlog needs, not by a message
count: 20,000 jobs are a minute for a GPU and several for a CPU, and a count that suits one is wrong
for the other. Each worker writes the jobs per second it sustains when its batches are full into a
hash per family (`<prefix>:capacity:<family>`, one field per worker: `"<jobs/s> <unix time>"`); the
API sums the fields written in the last `FRESH_SECONDS`, so a dead worker stops counting on its own.
Losing the hash (a Redis restart) only means admission falls back to the depth bound until the next
full batch rewrites it.
"""

from __future__ import annotations

import time

import redis

from config import Settings

FRESH_SECONDS = 30.0
KEY_TTL_SECONDS = 120


def capacity_key(settings: Settings, family: str) -> str:
    return f"{settings.queue_prefix}:capacity:{family}"


def report_capacity(client: redis.Redis, settings: Settings, family: str, worker: str, jobs_per_second: float) -> None:
    """Record one worker's busy throughput for a family (overwrites its previous figure)."""
    key = capacity_key(settings, family)
    with client.pipeline(transaction=False) as pipe:
        pipe.hset(key, worker, f"{jobs_per_second:.3f} {time.time():.3f}")
        pipe.expire(key, KEY_TTL_SECONDS)
        pipe.execute()


def family_capacity(client: redis.Redis, settings: Settings, family: str) -> float | None:
    """Jobs per second the family's live workers sustain together; None when no worker reported lately."""
    now = time.time()
    total, fresh = 0.0, False
    for raw in client.hvals(capacity_key(settings, family)):
        try:
            rate, at = (float(part) for part in raw.split())
        except (ValueError, AttributeError):
            continue
        if now - at <= FRESH_SECONDS and rate > 0:
            total, fresh = total + rate, True
    return total if fresh else None
