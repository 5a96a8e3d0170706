"""The error an entry of a submission raises, and the checks every kind of input shares."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from app.errors import ApiError
from config import Settings


class EntryError(Exception):
    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details

    def as_api_error(self) -> ApiError:
        return ApiError(self.status, self.code, self.message, self.details)


def unknown_analysis(name: object, served: Iterable[str]) -> EntryError:
    """The one answer to an analysis this deployment does not serve: a JSON job, an upload, a list filter."""
    shown = repr(name) if len(repr(name)) <= 80 else repr(name)[:77] + "..."
    return EntryError(
        422,
        "unknown_analysis",
        f"analysis {shown} is not served here; GET /v1/analyses lists the analyses",
        {"available": sorted(served)},
    )


def canonical_hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def check_metadata(metadata: dict[str, Any], settings: Settings) -> None:
    if not metadata:
        return
    # In UTF-8, as it is sent and stored: json.dumps' default \u escapes counted a CJK character 6 bytes.
    size = len(json.dumps(metadata, separators=(",", ":"), ensure_ascii=False).encode())
    if size > settings.max_metadata_bytes:
        raise EntryError(
            413,
            "metadata_too_large",
            f"metadata is {size} bytes as JSON; the limit is {settings.max_metadata_bytes}",
            {"limit": settings.max_metadata_bytes, "actual": size},
        )
