"""Keyset cursors for GET /v1/jobs: `<created_at in µs since the epoch>.<job id>` of the last row of a page.

Plain rather than encoded: a cursor is not a secret (it only works within its tenant), and its format
is one regular expression the OpenAPI document publishes, so every string that matches it is a
cursor the API accepts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from app.errors import ApiError

CURSOR_PATTERN = r"^[0-9]{1,16}\.job_[A-Za-z0-9]{1,64}$"  # 16 digits of µs reach the year 2286
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def encode_cursor(row: Mapping[str, Any]) -> str:
    return f"{(row['created_at'] - _EPOCH) // _MICROSECOND}.{row['id']}"


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    if not re.fullmatch(CURSOR_PATTERN, cursor):
        raise ApiError(400, "invalid_cursor", "cursor is not one this API returned")
    micros, job_id = cursor.split(".", 1)
    return _EPOCH + int(micros) * _MICROSECOND, job_id
