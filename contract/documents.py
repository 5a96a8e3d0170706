"""The job and webhook-event documents, built by hand from rows for speed.

`app.schemas.Job` and `app.schemas.WebhookEvent` document the same shapes for OpenAPI; a contract test
checks that every document validates against its schema.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache
from typing import Any


def iso_timestamp(value: datetime | None) -> str | None:
    """RFC 3339 with a Z, as every timestamp in the API reads.

    Cached: the jobs of one batch share their created_at (and a worker's batch its started_at and
    completed_at), and formatting was a third of building a job document. The key has the tzinfo
    too, since equal instants in other zones are equal datetimes but are written differently."""
    return _formatted(value, value.tzinfo) if value else None


@lru_cache(maxsize=1024)
def _formatted(value: datetime, _zone: object) -> str:
    return value.isoformat().replace("+00:00", "Z")


def job_document(row: Mapping[str, Any]) -> dict[str, Any]:
    """The job object, as the API returns it and webhooks carry it."""
    error = {"code": row["error_code"], "message": row["error_message"]} if row["error_code"] else None
    return {
        "id": row["id"],
        "object": "job",
        "analysis": row["analysis"],
        "status": row["status"],
        "created_at": iso_timestamp(row["created_at"]),
        "started_at": iso_timestamp(row["started_at"]),
        "completed_at": iso_timestamp(row["completed_at"]),
        "result": row["result"],
        "error": error,
        "metadata": row["metadata"],
        "attempts": row["attempts"],
        "erased_at": iso_timestamp(row["erased_at"]),
    }


def _attempt_document(attempt: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "attempt": attempt["attempt"],
        "url": attempt["url"],
        "status_code": attempt["status_code"],
        "latency_ms": attempt["latency_ms"],
        "error": attempt["error"],
        "next_attempt_at": iso_timestamp(attempt["next_attempt_at"]),
        "created_at": iso_timestamp(attempt["created_at"]),
    }


def webhook_event_document(event: Mapping[str, Any], attempts: list[Mapping[str, Any]]) -> dict[str, Any]:
    """A webhook event with every delivery attempt, as GET /v1/jobs/{id}/webhooks lists it."""
    return {
        "id": event["id"],
        "type": event["type"],
        "url": event["url"],
        "status": event["status"],
        "created_at": iso_timestamp(event["created_at"]),
        "delivered_at": iso_timestamp(event["delivered_at"]),
        "next_attempt_at": iso_timestamp(event["next_attempt_at"]) if event["status"] == "pending" else None,
        "attempts": [_attempt_document(a) for a in attempts],
    }
