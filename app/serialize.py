"""Rows to the JSON job object (kept by hand for speed; app.schemas.Job documents the same shape)."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping

from app.errors import ApiError


def _ts(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def job_json(row: RowMapping) -> dict[str, Any]:
    error = {"code": row["error_code"], "message": row["error_message"]} if row["error_code"] else None
    return {
        "id": row["id"],
        "object": "job",
        "analysis": row["analysis"],
        "status": row["status"],
        "created_at": _ts(row["created_at"]),
        "started_at": _ts(row["started_at"]),
        "completed_at": _ts(row["completed_at"]),
        "result": row["result"],
        "error": error,
        "metadata": row["metadata"],
        "attempts": row["attempts"],
        "erased_at": _ts(row["erased_at"]),
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
