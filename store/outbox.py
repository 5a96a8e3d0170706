"""The outbox: what must reach the broker after a transaction commits.

Webhook events are written in the same transaction as the job state change they report, unique on
(job, type), so a job processed twice, or a state reported twice, yields one event. Job messages that
could not be sent after commit are recorded here, so the sweeper sends them.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from contract.documents import iso_timestamp, job_document
from store.ids import new_ordered_id
from store.tables import JOB_DOCUMENT_COLUMNS, EventStatus, JobStatus, jobs, webhook_events

#: The event a job's new state produces, and the subscription (`webhook.events`) that asks for it.
EVENT_FOR_STATUS: dict[str, tuple[str, str]] = {
    JobStatus.RUNNING: ("job.started", "started"),
    JobStatus.SUCCEEDED: ("job.succeeded", "completed"),
    JobStatus.FAILED: ("job.failed", "completed"),
    JobStatus.CANCELED: ("job.canceled", "completed"),
}


def create_events(conn: Connection, job_ids: list[str], publish_epoch: str | None) -> list[str]:
    """Events for these jobs' current states, where their webhook asked for them; ids of new events.

    They are stamped with the broker epoch the caller will publish them under (after commit), so the
    webhook sweeper leaves them alone unless the broker loses them.
    """
    if not job_ids:
        return []
    rows = conn.execute(
        select(*JOB_DOCUMENT_COLUMNS, jobs.c.webhook).where(
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
                "id": new_ordered_id("msg"),
                "job_id": row["id"],
                "owner": row["owner"],
                "type": event_type,
                "url": row["webhook"]["url"],
                "payload": payload,
                "publish_epoch": publish_epoch,
                # PostgreSQL's clock, which the webhook sweep compares it with (store.maintenance.due_events), as
                # the job's enqueued_at; the payload's timestamp is for the receiver and may stay this process's.
                "published_at": func.now(),
            }
        )
    if not values:
        return []
    stmt = pg_insert(webhook_events).values(values).on_conflict_do_nothing(index_elements=["job_id", "type"])
    return list(conn.execute(stmt.returning(webhook_events.c.id)).scalars())


def record_job_publish(conn: Connection, job_ids: list[str], epoch: str | None) -> None:
    """After a publish whose epoch was not the one the rows were stamped with: the actual epoch, or
    NULL if the publish failed (the sweeper then publishes these jobs)."""
    conn.execute(
        update(jobs).where(jobs.c.id.in_(job_ids), jobs.c.status == JobStatus.QUEUED).values(publish_epoch=epoch)
    )


def record_event_publish(conn: Connection, event_ids: list[str], epoch: str | None) -> None:
    """The same for webhook events still waiting for their attempt."""
    conn.execute(
        update(webhook_events)
        .where(webhook_events.c.id.in_(event_ids), webhook_events.c.status == EventStatus.PENDING)
        .values(publish_epoch=epoch)
    )
