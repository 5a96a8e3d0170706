"""The webhook deliverer's queries: claim a batch of events, record a batch of attempts, stop a dead URL.

Retries are driven from PostgreSQL (the next attempt's time lives in the row), never from broker ETAs.
An event's `attempts` is its fence: a claim increments it, and a record lands only on an event still
`delivering` under the same attempt number, so a late or duplicate deliverer (its lock expired, the
event was claimed again) cannot move the event back; its attempt is still logged.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Connection, func, text, update

from store.db import interval
from store.tables import EventStatus, webhook_events


@dataclass(frozen=True)
class ClaimedEvent:
    id: str
    owner: str
    url: str
    payload: dict[str, Any]
    attempt: int


def claim_events(conn: Connection, event_ids: list[str], lock_seconds: float) -> list[ClaimedEvent]:
    """Take every due, pending event of the list for one attempt each; one statement for the batch."""
    if not event_ids:
        return []
    rows = conn.execute(
        update(webhook_events)
        .where(
            webhook_events.c.id.in_(event_ids),
            webhook_events.c.status == EventStatus.PENDING,
            webhook_events.c.next_attempt_at <= func.now(),
        )
        .values(
            status=EventStatus.DELIVERING,
            attempts=webhook_events.c.attempts + 1,
            locked_until=func.now() + interval(lock_seconds),
            publish_epoch=None,  # its message is consumed: a retry needs a new one
        )
        .returning(
            webhook_events.c.id,
            webhook_events.c.owner,
            webhook_events.c.url,
            webhook_events.c.payload,
            webhook_events.c.attempts,
        )
    ).mappings()
    return [ClaimedEvent(r["id"], r["owner"], r["url"], r["payload"], r["attempts"]) for r in rows]


@dataclass(frozen=True)
class AttemptRecord:
    """What one attempt came to. `deferred`: not tried (its receiver was busy or paused), so it does not
    count as an attempt and the event waits `next_in` seconds."""

    id: str  # the event's
    attempt: int
    url: str
    outcome: str  # delivered | pending (retry later) | failed | stopped | deferred
    status_code: int | None
    latency_ms: int
    error: str | None
    next_in: float | None


_RECORD_SQL = text(
    """
    WITH v AS (
        SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS v(
            id text, attempt int, url text, outcome text, status_code int, latency_ms int, error text, next_in float8)
    ), logged AS (
        INSERT INTO webhook_attempts (event_id, attempt, url, status_code, latency_ms, error, next_attempt_at)
        SELECT v.id, v.attempt, v.url, v.status_code, v.latency_ms, v.error,
               CASE WHEN v.next_in IS NULL THEN NULL ELSE now() + make_interval(secs => v.next_in) END
        FROM v JOIN webhook_events e ON e.id = v.id
        WHERE v.outcome <> 'deferred'
    )
    UPDATE webhook_events e SET
        status = CASE WHEN v.outcome = 'deferred' THEN 'pending' ELSE v.outcome END,
        attempts = CASE WHEN v.outcome = 'deferred' THEN e.attempts - 1 ELSE e.attempts END,
        locked_until = NULL,
        last_error = CASE WHEN v.outcome = 'deferred' THEN e.last_error ELSE v.error END,
        delivered_at = CASE WHEN v.outcome = 'delivered' THEN now() ELSE e.delivered_at END,
        next_attempt_at = CASE WHEN v.next_in IS NULL THEN e.next_attempt_at
                               ELSE now() + make_interval(secs => v.next_in) END
    FROM v
    WHERE e.id = v.id AND e.status = :delivering AND e.attempts = v.attempt
    RETURNING e.id, e.status
    """
)


def record_attempts(conn: Connection, records: list[AttemptRecord]) -> dict[str, str]:
    """Log every attempt and move each event on, in one statement; {event id: new status} for the events
    still held by these attempts (a fenced-out one is logged, and left as it is)."""
    if not records:
        return {}
    rows = conn.execute(
        _RECORD_SQL, {"rows": json.dumps([asdict(r) for r in records]), "delivering": EventStatus.DELIVERING}
    )
    return {row.id: row.status for row in rows}


def stop_url(conn: Connection, owner: str, url: str) -> int:
    """410 Gone: stop every pending event of this tenant to this URL."""
    result = conn.execute(
        update(webhook_events)
        .where(
            webhook_events.c.owner == owner,
            webhook_events.c.url == url,
            webhook_events.c.status == EventStatus.PENDING,
        )
        .values(status=EventStatus.STOPPED, last_error="the receiver answered 410 Gone for this URL")
    )
    return result.rowcount
