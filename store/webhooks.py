"""Webhook outbox queries: events created with the state change they report, claimed for delivery,
every attempt recorded, retries driven from PostgreSQL (never from broker ETAs)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, RowMapping, and_, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from store.ids import new_id, new_webhook_secret
from store.jobs import JOB_COLUMNS, iso_timestamp, job_document
from store.tables import jobs, tenants, webhook_attempts, webhook_events

EVENT_FOR_STATUS = {
    "running": ("job.started", "started"),
    "succeeded": ("job.succeeded", "completed"),
    "failed": ("job.failed", "completed"),
    "canceled": ("job.canceled", "completed"),
}


def _interval(seconds: float) -> Any:
    return func.make_interval(0, 0, 0, 0, 0, 0, seconds)


def create_events(conn: Connection, job_ids: list[str], publish_grace_seconds: float) -> list[str]:
    """Events for these jobs' current states, where their webhook asked for them; ids of new events.

    Unique on (job, type): a job processed twice, or a state reported twice, yields one event.
    `locked_until` marks the events as handed to the broker just now, so the sweeper leaves
    them alone unless the message is lost.
    """
    if not job_ids:
        return []
    rows = conn.execute(
        select(*JOB_COLUMNS, jobs.c.webhook).where(
            jobs.c.id.in_(job_ids), func.jsonb_typeof(jobs.c.webhook) == "object"
        )
    ).mappings()
    now = datetime.now(UTC)
    values = []
    for row in rows:
        event_type, subscription = EVENT_FOR_STATUS.get(row["status"], (None, None))
        if event_type is None or subscription not in row["webhook"].get("events", ()):
            continue
        payload = {"type": event_type, "timestamp": iso_timestamp(now), "data": job_document(row)}
        values.append(
            {
                "id": new_id("msg", 15),
                "job_id": row["id"],
                "owner": row["owner"],
                "type": event_type,
                "url": row["webhook"]["url"],
                "payload": payload,
                "locked_until": now + timedelta(seconds=publish_grace_seconds),
            }
        )
    if not values:
        return []
    stmt = pg_insert(webhook_events).values(values).on_conflict_do_nothing(index_elements=["job_id", "type"])
    return list(conn.execute(stmt.returning(webhook_events.c.id)).scalars())


@dataclass(frozen=True)
class ClaimedEvent:
    id: str
    owner: str
    url: str
    payload: dict[str, Any]
    attempt: int
    secrets: list[str]  # current first; the previous one while its grace period lasts


def claim_event(conn: Connection, event_id: str, lock_seconds: float) -> ClaimedEvent | None:
    """Take a due, pending event for one delivery attempt; None if it is not due or someone has it."""
    row = (
        conn.execute(
            update(webhook_events)
            .where(
                webhook_events.c.id == event_id,
                webhook_events.c.status == "pending",
                webhook_events.c.next_attempt_at <= func.now(),
            )
            .values(
                status="delivering",
                attempts=webhook_events.c.attempts + 1,
                locked_until=func.now() + _interval(lock_seconds),
            )
            .returning(
                webhook_events.c.id,
                webhook_events.c.owner,
                webhook_events.c.url,
                webhook_events.c.payload,
                webhook_events.c.attempts,
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        return None
    return ClaimedEvent(
        row["id"], row["owner"], row["url"], row["payload"], row["attempts"], signing_secrets(conn, row["owner"])
    )


def record_attempt(
    conn: Connection,
    event: ClaimedEvent,
    *,
    status_code: int | None,
    latency_ms: int,
    error: str | None,
    outcome: str,
    next_attempt_in: float | None,
) -> None:
    """Write the attempt and move the event on: `delivered`, `pending` (retry), `failed` or `stopped`."""
    next_at = func.now() + _interval(next_attempt_in) if next_attempt_in is not None else None
    conn.execute(
        webhook_attempts.insert().values(
            event_id=event.id,
            attempt=event.attempt,
            url=event.url,
            status_code=status_code,
            latency_ms=latency_ms,
            error=error,
            next_attempt_at=next_at,
        )
    )
    values: dict[str, Any] = {"status": outcome, "locked_until": None, "last_error": error}
    if outcome == "delivered":
        values["delivered_at"] = func.now()
    if next_at is not None:
        values["next_attempt_at"] = next_at
    conn.execute(update(webhook_events).where(webhook_events.c.id == event.id).values(**values))


def stop_url(conn: Connection, owner: str, url: str) -> int:
    """410 Gone: stop every pending event of this tenant to this URL."""
    result = conn.execute(
        update(webhook_events)
        .where(webhook_events.c.owner == owner, webhook_events.c.url == url, webhook_events.c.status == "pending")
        .values(status="stopped", last_error="the receiver answered 410 Gone for this URL")
    )
    return result.rowcount


def due_events(conn: Connection, publish_grace_seconds: float, limit: int = 1000) -> list[str]:
    """Events to (re)publish: retries now due, lost messages, and deliveries whose worker died."""
    now = func.now()
    expired = and_(webhook_events.c.status == "delivering", webhook_events.c.locked_until < now)
    due = and_(
        webhook_events.c.status == "pending",
        webhook_events.c.next_attempt_at <= now,
        or_(webhook_events.c.locked_until.is_(None), webhook_events.c.locked_until < now),
    )
    picked = (
        select(webhook_events.c.id)
        .where(or_(expired, due))
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    return list(
        conn.execute(
            update(webhook_events)
            .where(webhook_events.c.id.in_(picked))
            .values(status="pending", locked_until=now + _interval(publish_grace_seconds))
            .returning(webhook_events.c.id)
        ).scalars()
    )


def events_for_job(conn: Connection, owner: str, job_id: str) -> list[dict[str, Any]]:
    events = conn.execute(
        select(webhook_events)
        .where(webhook_events.c.owner == owner, webhook_events.c.job_id == job_id)
        .order_by(webhook_events.c.created_at)
    ).mappings()
    listed = [dict(e) for e in events]
    if not listed:
        return []
    attempts = conn.execute(
        select(webhook_attempts)
        .where(webhook_attempts.c.event_id.in_([e["id"] for e in listed]))
        .order_by(webhook_attempts.c.id)
    ).mappings()
    by_event: dict[str, list[RowMapping]] = {}
    for attempt in attempts:
        by_event.setdefault(attempt["event_id"], []).append(attempt)
    for event in listed:
        event["attempt_log"] = by_event.get(event["id"], [])
    return listed


def redeliver(conn: Connection, owner: str, event_id: str, publish_grace_seconds: float) -> str | None:
    """Queue one more delivery of an event (same webhook-id). None: unknown event, or mid-delivery."""
    exists = conn.execute(
        select(webhook_events.c.status).where(webhook_events.c.id == event_id, webhook_events.c.owner == owner)
    ).scalar_one_or_none()
    if exists is None:
        return None
    conn.execute(
        update(webhook_events)
        .where(webhook_events.c.id == event_id, webhook_events.c.status != "delivering")
        .values(
            status="pending", next_attempt_at=func.now(), locked_until=func.now() + _interval(publish_grace_seconds)
        )
    )
    return exists


def signing_secrets(conn: Connection, owner: str) -> list[str]:
    row = conn.execute(
        select(
            tenants.c.webhook_secret,
            tenants.c.webhook_secret_previous,
            tenants.c.webhook_secret_previous_until > func.now(),
        ).where(tenants.c.id == owner)
    ).one()
    current, previous, previous_live = row
    return [current, previous] if previous and previous_live else [current]


def secret_info(conn: Connection, owner: str) -> dict[str, Any]:
    row = (
        conn.execute(
            select(tenants.c.webhook_secret, tenants.c.webhook_secret_previous_until).where(tenants.c.id == owner)
        )
        .mappings()
        .one()
    )
    until = row["webhook_secret_previous_until"]
    live = until is not None and until > datetime.now(UTC)
    return {
        "secret": row["webhook_secret"],
        "previous_secret_expires_at": iso_timestamp(until) if live else None,
    }


def rotate_secret(conn: Connection, owner: str, grace_seconds: float) -> dict[str, Any]:
    """New secret now; the old one keeps signing (alongside) for the grace period."""
    conn.execute(
        update(tenants)
        .where(tenants.c.id == owner)
        .values(
            webhook_secret_previous=tenants.c.webhook_secret,
            webhook_secret=new_webhook_secret(),
            webhook_secret_previous_until=func.now() + _interval(grace_seconds),
        )
    )
    return secret_info(conn, owner)
