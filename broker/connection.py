"""Redis clients with bounded waits: a broker outage must cost a request milliseconds, never a hang."""

from __future__ import annotations

import redis

from config import Settings


def redis_client(settings: Settings) -> redis.Redis:
    """A pooled client; connect and every read/write time out (settings), and nothing retries silently."""
    return redis.Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_timeout_seconds,
        socket_connect_timeout=settings.redis_connect_timeout_seconds,
        health_check_interval=30,
    )
