"""multipart/form-data submissions: `analysis`, `file` (audio or call records), optional `metadata` and `webhook`
(JSON); call records also take `columns` and `parameters` (JSON)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from flask import request
from pydantic import ValidationError

from app.cdr_input import cdr_spec
from app.errors import ApiError
from app.request_json import check_text_param, parse_json
from app.resources import Resources
from app.schemas import WebhookSpec
from app.validation import EntryError, audio_spec, check_webhook
from store.api import JobSpec


def _json_field(name: str) -> Any:
    raw = request.form.get(name)
    if raw is None:
        return None
    try:
        return parse_json(raw)
    except ApiError as exc:
        raise EntryError(422, "validation_error", f"form field {name!r} must be JSON: {exc.message}") from None


def upload_spec(svc: Resources, key: str | None) -> JobSpec:
    """The JobSpec of an audio upload, or EntryError; the file is probed before anything is stored."""
    form, files = request.form, request.files
    analysis = check_text_param("form field 'analysis'", form.get("analysis"))
    if not analysis:
        raise EntryError(422, "validation_error", "form field 'analysis' is required")
    if analysis not in svc.catalog:
        raise EntryError(422, "unknown_analysis", f"analysis {analysis!r} is not served here", sorted(svc.catalog))
    kind = svc.catalog[analysis].input
    if kind == "text":
        raise EntryError(422, "validation_error", f"{analysis} takes text: send it as application/json")
    upload = files.get("file")
    if upload is None:
        raise EntryError(
            422,
            "missing_file",
            f"send the {'call records' if kind == 'cdr' else 'audio'} in a form field named 'file'",
            {"received_files": sorted(files), "received_fields": sorted(form)},
        )
    metadata = _json_field("metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise EntryError(422, "validation_error", "form field 'metadata' must be a JSON object")
    raw_webhook = _json_field("webhook")
    try:
        webhook = check_webhook(
            WebhookSpec.model_validate(raw_webhook) if raw_webhook is not None else None, svc.settings
        )
    except ValidationError:
        raise EntryError(422, "validation_error", 'form field webhook must be JSON {"url", "events"?}') from None
    filename = check_text_param("the file's name", upload.filename)
    if kind == "cdr":
        spec = cdr_spec(
            svc.catalog[analysis],
            upload.stream,
            filename=filename,
            columns=_json_field("columns"),
            parameters=_json_field("parameters"),
            metadata=metadata,
            settings=svc.settings,
            idempotency_key=key,
        )
        return replace(spec, webhook=webhook)
    data = upload.read(svc.settings.max_audio_bytes + 1)
    spec = audio_spec(analysis, data, filename, upload.mimetype, metadata, svc.settings, key)
    return replace(spec, webhook=webhook)
