"""What the broker still holds: messages waiting in a queue, and messages a worker took but has not acked.

The sweepers ask before re-publishing, so a message still in the broker is never sent again (a storm
of duplicates under a backlog). kombu's Redis transport keeps delivered, unacknowledged messages in
the `unacked` hash (value: `[message, exchange, routing_key]`) until the worker acks them, and when
each was delivered in the `unacked_index` sorted set. A worker killed with messages in hand leaves
them there until kombu's visibility timeout (hours), so only recently delivered ones count as held.
"""

from __future__ import annotations

import json
import logging
import time

import redis

from broker.messages import message_args

log = logging.getLogger(__name__)

UNACKED_KEY = "unacked"  # kombu's default `unacked_key` transport option
UNACKED_INDEX_KEY = "unacked_index"  # and `unacked_index_key`: delivery tag → when it was delivered


def waiting(client: redis.Redis, queue: str) -> int:
    """Messages waiting in a queue."""
    return int(client.llen(queue))


def held_ids(client: redis.Redis, queue: str, newer_than_seconds: float, limit: int = 100_000) -> set[str]:
    """Ids in the first argument of every message routed to `queue` that a worker took less than
    `newer_than_seconds` ago and has not acked: a live worker is about to run them.

    Bounded: a worker holds at most its prefetch; more than `limit` such messages means the broker is
    far from drained, and OverflowError tells the caller to treat nothing as lost.
    """
    tags = client.zrangebyscore(UNACKED_INDEX_KEY, time.time() - newer_than_seconds, "+inf")
    if len(tags) > limit:
        raise OverflowError(f"more than {limit} unacknowledged messages")
    found: set[str] = set()
    for value in client.hmget(UNACKED_KEY, tags) if tags else []:
        if value is None:
            continue  # acked meanwhile
        try:
            payload, _exchange, routing_key = json.loads(value)
            if routing_key != queue:
                continue
            (first, *_) = message_args(json.dumps(payload))
        except (ValueError, TypeError, KeyError):
            log.debug("unreadable unacked message skipped", exc_info=True)
            continue
        found.update(first if isinstance(first, list) else [first])
    return found
