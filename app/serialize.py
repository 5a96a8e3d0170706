"""Rows to the JSON job object (kept by hand for speed; app.schemas.Job documents the same shape)."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping

from app.errors import ApiError
from store.jobs import iso_timestamp
from store.jobs import job_document as job_json

__all__ = ["decode_cursor", "encode_cursor", "event_json", "job_json"]


def event_json(event: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": event["id"],
        "type": event["type"],
        "url": event["url"],
        "status": event["status"],
        "created_at": iso_timestamp(event["created_at"]),
        "delivered_at": iso_timestamp(event["delivered_at"]),
        "next_attempt_at": iso_timestamp(event["next_attempt_at"]) if event["status"] == "pending" else None,
        "attempts": [
            {
                "attempt": a["attempt"],
                "url": a["url"],
                "status_code": a["status_code"],
                "latency_ms": a["latency_ms"],
                "error": a["error"],
                "next_attempt_at": iso_timestamp(a["next_attempt_at"]),
                "created_at": iso_timestamp(a["created_at"]),
            }
            for a in event["attempt_log"]
        ],
    }


def encode_cursor(row: RowMapping) -> str:
    raw = json.dumps([row["created_at"].isoformat(), row["id"]]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, job_id = json.loads(raw)
        when = datetime.fromisoformat(created)
        if not isinstance(job_id, str) or when.tzinfo is None:
            raise ValueError
        return when, job_id
    except (ValueError, TypeError, binascii.Error, json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, "invalid_cursor", "cursor is not one this API returned") from None
