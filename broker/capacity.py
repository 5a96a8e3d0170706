"""What the inference workers can do: each worker's busy throughput per model family, kept in Redis.

Admission (app/backpressure.py) bounds a queue by the *time* its backlog needs, not by a message
count: 20,000 jobs are a minute for a GPU and several for a CPU, and a count that suits one is wrong
for the other. Each worker writes the jobs per second it sustains when its batches are full into a
hash per family (`<prefix>:capacity:<family>`, one field per worker: `"<jobs/s> <unix time>"`); the
API sums the fields written in the last `FRESH_SECONDS`, so a dead worker stops counting on its own.
Losing the hash (a Redis restart) only means admission falls back to the depth bound until the next
full batch rewrites it. Both the stamp and the freshness check read Redis's clock (TIME), not the hosts':
with a worker's clock 30 s behind the API's, every report looked stale and admission fell back to the
depth bound; 30 s ahead, a dead worker counted for twice as long.
"""

from __future__ import annotations

import redis

from config import Settings

FRESH_SECONDS = 30.0
KEY_TTL_SECONDS = 120


def capacity_key(settings: Settings, family: str) -> str:
    return f"{settings.queue_prefix}:capacity:{family}"


#: HSET the worker's figure stamped with Redis's own clock (seconds), and keep the hash alive.
_REPORT = """
local now = redis.call('TIME')[1]
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. now)
redis.call('EXPIRE', KEYS[1], ARGV[3])
"""


def report_capacity(client: redis.Redis, settings: Settings, family: str, worker: str, jobs_per_second: float) -> None:
    """Record one worker's busy throughput for a family (overwrites its previous figure)."""
    key = capacity_key(settings, family)
    client.eval(_REPORT, 1, key, worker, f"{jobs_per_second:.3f}", KEY_TTL_SECONDS)


def family_capacity(client: redis.Redis, settings: Settings, family: str) -> float | None:
    """Jobs per second the family's live workers sustain together; None when no worker reported lately."""
    with client.pipeline(transaction=False) as pipe:
        pipe.time()
        pipe.hvals(capacity_key(settings, family))
        (seconds, _), values = pipe.execute()
    now = float(seconds)
    total, fresh = 0.0, False
    for raw in values:
        try:
            rate, at = (float(part) for part in raw.split())
        except (ValueError, AttributeError):
            continue
        if now - at <= FRESH_SECONDS and rate > 0:
            total, fresh = total + rate, True
    return total if fresh else None
