"""Each tenant's job state changes, kept briefly in Redis for `GET /v1/events` (Server-Sent Events).

Two Redis structures, both written by the lifecycle after commit (beside the `?wait` notifications of
broker.job_pubsub, and like them best effort):

- a capped stream per tenant, `<prefix>:events:<tenant>`, holding the last `events_window` changes: its
  entry ids are the SSE event ids, so a client that reconnects with `Last-Event-ID` reads what it missed
  with one XRANGE, as long as that is still inside the window;
- one pub/sub channel, `<prefix>:job-events`, whose messages are tenant ids: "this tenant's stream grew".
  An API process subscribes to it once and wakes only its streams of that tenant; no stream holds a
  Redis connection while it waits, so a thousand idle streams cost a thousand greenlets, not connections.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any, NamedTuple

import orjson
import redis
from redis.client import Pipeline

log = logging.getLogger(__name__)


class JobEvent(NamedTuple):
    """One job's change of state, as a tenant's event stream tells it (a NamedTuple: one per job changed)."""

    tenant: str
    job_id: str
    analysis: str
    status: str
    at: str  # ISO 8601, UTC
    error_code: str | None = None


def stream_key(prefix: str, tenant: str) -> str:
    return f"{prefix}:events:{tenant}"


def channel(prefix: str) -> str:
    return f"{prefix}:job-events"


#: Appends ARGV[5..] to the stream KEYS[1] (capped near ARGV[1] entries), renews its expiry (ARGV[2] s)
#: and wakes its readers (PUBLISH ARGV[4] on channel ARGV[3]): one command for all of a tenant's events.
#: A pipeline of one XADD per event cost ~10 µs of the API's Python per job (redis-py packs and parses
#: each command), a tenth of a 100-job batch request; the entries and their ids are the same.
_APPEND_LUA = """
for i = 5, #ARGV do
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'data', ARGV[i])
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return #ARGV - 4
"""


def add_events(pipe: Pipeline, prefix: str, window: int, keep_seconds: int, events: Iterable[JobEvent]) -> None:
    """Queue on `pipe` what appends `events` to their tenants' capped streams and wakes their readers
    (the submission path sends them in the same round trip as the jobs' publish)."""
    by_tenant: dict[str, list[bytes]] = {}
    for event in events:
        # Built by hand: dataclasses.asdict deep-copies, and was 9 % of a 100-job batch request.
        data = {"job_id": event.job_id, "analysis": event.analysis, "status": event.status, "at": event.at}
        if event.error_code is not None:
            data["error_code"] = event.error_code
        by_tenant.setdefault(event.tenant, []).append(orjson.dumps(data))
    for tenant, entries in by_tenant.items():
        pipe.eval(_APPEND_LUA, 1, stream_key(prefix, tenant), window, keep_seconds, channel(prefix), tenant, *entries)


def record_events(client: redis.Redis, prefix: str, window: int, keep_seconds: int, events: list[JobEvent]) -> bool:
    """Append to each tenant's capped stream and wake its readers. Never raises: a stream missing an
    event is corrected by the reader's next GET of the job, and the job itself is in PostgreSQL.
    True if Redis timed out (it may be hung: the caller stops asking for a while)."""
    if not events:
        return False
    try:
        pipe = client.pipeline(transaction=False)
        add_events(pipe, prefix, window, keep_seconds, events)
        pipe.execute()
    except redis.RedisError as exc:
        log.warning("job events not recorded", exc_info=True)
        return isinstance(exc, redis.TimeoutError)
    return False


def read_after(
    client: redis.Redis, prefix: str, tenant: str, after: str, count: int
) -> list[tuple[str, dict[str, Any]]]:
    """Up to `count` events newer than id `after` ("0" for all kept), oldest first."""
    rows = client.xrange(stream_key(prefix, tenant), min=f"({after}" if after != "0" else "-", count=count)
    return [(_text(entry_id), json.loads(fields[b"data"])) for entry_id, fields in rows]


def last_id(client: redis.Redis, prefix: str, tenant: str) -> str:
    """The newest event id kept for the tenant ("0-0" if none): where a fresh stream starts."""
    rows = client.xrevrange(stream_key(prefix, tenant), count=1)
    return _text(rows[0][0]) if rows else "0-0"


def first_id(client: redis.Redis, prefix: str, tenant: str) -> str | None:
    """The oldest event id still kept, or None: a Last-Event-ID before it has lost events."""
    rows = client.xrange(stream_key(prefix, tenant), count=1)
    return _text(rows[0][0]) if rows else None


def never_trimmed(client: redis.Redis, prefix: str, tenant: str) -> bool:
    """Whether the tenant's stream still holds every event it was given (Redis 7's max-deleted-entry-id is
    0-0); False where that is unknown (an older Redis), so a caller resets rather than miss a loss."""
    try:
        info = client.xinfo_stream(stream_key(prefix, tenant))
    except redis.ResponseError:  # no such stream: nothing kept, nothing to miss
        return True
    deleted = info.get("max-deleted-entry-id")
    return deleted is not None and _text(deleted) == "0-0"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
