"""Turning request bodies into JobSpecs, with one error per problem and nothing created on failure."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import ValidationError

from app.errors import ApiError
from app.schemas import JobCreate
from config import Settings
from config.analyses import AnalysisConfig
from store.jobs import JobSpec


class EntryError(Exception):
    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details

    def as_api_error(self) -> ApiError:
        return ApiError(self.status, self.code, self.message, self.details)


def canonical_hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _pydantic_details(exc: ValidationError) -> list[dict[str, Any]]:
    return [{"loc": list(err["loc"]), "message": err["msg"], "type": err["type"]} for err in exc.errors()]


def validate_job(
    payload: Any, settings: Settings, catalog: dict[str, AnalysisConfig], idempotency_key: str | None = None
) -> JobSpec:
    """One job entry → JobSpec, or EntryError with the status and code the API documents."""
    if not isinstance(payload, dict):
        raise EntryError(422, "validation_error", "a job must be a JSON object")
    analysis = payload.get("analysis")
    if analysis is None:
        raise EntryError(
            422, "validation_error", "field 'analysis' is required", [{"loc": ["analysis"], "message": "required"}]
        )
    if not isinstance(analysis, str) or analysis not in catalog:
        raise EntryError(
            422,
            "unknown_analysis",
            f"analysis {analysis!r} is not served here; GET /v1/analyses lists the analyses",
            {"available": sorted(catalog)},
        )
    try:
        job = JobCreate.model_validate(payload)
    except ValidationError as exc:
        raise EntryError(422, "validation_error", "the job is not valid", _pydantic_details(exc)) from None
    text = job.input.text
    if not text.strip():
        raise EntryError(422, "empty_text", "input.text is empty")
    if len(text) > settings.max_text_chars:
        raise EntryError(
            413,
            "input_too_large",
            f"input.text has {len(text)} characters; the limit is {settings.max_text_chars}",
            {"limit": settings.max_text_chars, "actual": len(text)},
        )
    metadata_size = len(json.dumps(job.metadata, separators=(",", ":")))
    if metadata_size > settings.max_metadata_bytes:
        raise EntryError(
            413,
            "metadata_too_large",
            f"metadata is {metadata_size} bytes as JSON; the limit is {settings.max_metadata_bytes}",
            {"limit": settings.max_metadata_bytes, "actual": metadata_size},
        )
    body = {"analysis": job.analysis, "input": job.input.model_dump(), "metadata": job.metadata}
    return JobSpec(
        analysis=job.analysis,
        input=body["input"],
        metadata=job.metadata,
        idempotency_key=idempotency_key,
        request_hash=canonical_hash(body) if idempotency_key else None,
    )


def idempotency_key_from(header: str | None) -> str | None:
    if header is None:
        return None
    key = header.strip()
    if not key or len(key) > 200 or not key.isprintable():
        raise ApiError(400, "invalid_idempotency_key", "Idempotency-Key must be 1-200 printable characters")
    return key
