"""File submissions to POST /v1/jobs, in either of two shapes:

- multipart/form-data: `analysis`, `file` (audio or call records), optional `metadata` and `webhook`
  (JSON); audio also takes `options`, call records `columns` and `parameters` (JSON);
- the file as the request body (`Content-Type: text/csv`, `application/gzip`, `audio/wav`, …), the same
  fields as query parameters, and `filename`: `POST /v1/jobs?analysis=cdr_fraud&parameters={…}`.

Any other field is refused (422), as an unknown JSON field is: a misspelt `parameters` or `options`
would otherwise run the job with the defaults, and nobody would know.

Why a raw body as well: it is what `curl --data-binary @file`, S3-style clients and streaming producers
send, with no form encoding to get right. It skips multipart decoding, but the socket read, the hash and
the write remain: for a 61 MiB call-record file the whole job is about as fast either way (bench/cdr.py
measures both, interleaved).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import IO, Any

from flask import request
from pydantic import ValidationError
from werkzeug.datastructures import MultiDict

from app.cdr_input import cdr_spec
from app.entries import unknown_analysis
from app.errors import ApiError
from app.request_json import check_text_param, parse_json
from app.resources import Resources
from app.schemas import JobOptions, WebhookSpec
from app.validation import EntryError, audio_spec, check_options, check_webhook, pydantic_details, with_options
from store.api import JobSpec

#: Body types taken as the file itself (audio/* as well). The format is read from the bytes, not the type.
RAW_FILE_TYPES = frozenset(
    {
        "text/csv",
        "application/csv",
        "application/x-ndjson",
        "application/jsonl",
        "application/x-jsonlines",
        "application/gzip",
        "application/x-gzip",
        "application/octet-stream",
    }
)


#: The fields a file submission takes, by the kind of input its analysis reads.
_COMMON_FIELDS = frozenset({"analysis", "metadata", "webhook"})
FIELDS = {"audio": _COMMON_FIELDS | {"options"}, "cdr": _COMMON_FIELDS | {"columns", "parameters"}}


def is_raw_file(mimetype: str) -> bool:
    return mimetype in RAW_FILE_TYPES or mimetype.startswith("audio/")


@dataclass(frozen=True)
class Submission:
    """The file of a submission as a stream, wherever it came from."""

    stream: IO[bytes]
    filename: str | None
    mimetype: str


def _from_form(kind: str) -> Submission:
    upload = request.files.get("file")
    if upload is None and "file" in request.form:
        # A part with no filename in its Content-Disposition is a text field to the form parser (curl -F
        # 'file=<calls.csv' sends one): "send it in a field named 'file'" would send the user round in a circle.
        raise EntryError(
            422,
            "missing_file",
            "the 'file' part has no filename, so it arrived as a text field: send it as a file part "
            "(curl -F file=@path, or a filename in its Content-Disposition)",
            {"received_files": sorted(request.files), "received_fields": sorted(request.form)},
        )
    if upload is None:
        raise EntryError(
            422,
            "missing_file",
            f"send the {'call records' if kind == 'cdr' else 'audio'} in a form field named 'file'",
            {"received_files": sorted(request.files), "received_fields": sorted(request.form)},
        )
    return Submission(upload.stream, upload.filename, upload.mimetype)


def _from_body() -> Submission:
    return Submission(request.stream, request.args.get("filename"), request.mimetype)


def _check_fields(fields: MultiDict[str, str], where: str, kind: str, *, raw_body: bool) -> None:
    """Each field a name this kind takes, given once, as text; one file (multipart) named `file`."""
    known = FIELDS[kind] | ({"filename"} if raw_body else set())
    files = MultiDict() if raw_body else request.files
    twice = sorted(name for name in set(fields) | set(files) if len(fields.getlist(name) + files.getlist(name)) > 1)
    if twice:
        raise EntryError(422, "validation_error", f"{where}s given more than once: {', '.join(map(repr, twice))}")
    as_files = sorted(set(files) & known)
    if as_files:
        raise EntryError(
            422,
            "validation_error",
            f"{', '.join(map(repr, as_files))} came as a file part: send it as a text field "
            "(curl -F 'name=value', not -F name=@file)",
        )
    unknown = sorted(set(fields) - known) + sorted(set(files) - {"file"})
    if unknown:
        raise EntryError(
            422,
            "validation_error",
            f"unknown {where}{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}",
            {"unknown": unknown, "known": sorted(known | ({"file"} if not raw_body else set()))},
        )


def _json_field(fields: Mapping[str, str], where: str, name: str) -> Any:
    raw = fields.get(name)
    if raw is None:
        return None
    try:
        return parse_json(raw)
    except ApiError as exc:
        raise EntryError(422, "validation_error", f"{where} {name!r} must be JSON: {exc.message}") from None


def upload_spec(svc: Resources, key: str | None, *, raw_body: bool = False) -> JobSpec:
    """The JobSpec of a file submission, or EntryError; the file is checked before anything is stored."""
    fields, where = (request.args, "query parameter") if raw_body else (request.form, "form field")
    analysis = check_text_param(f"{where} 'analysis'", fields.get("analysis"))
    if not analysis:
        raise EntryError(422, "validation_error", f"{where} 'analysis' is required")
    if analysis not in svc.catalog:
        raise unknown_analysis(analysis, svc.catalog)
    kind = svc.catalog[analysis].input
    if kind == "text":
        raise EntryError(422, "validation_error", f"{analysis} takes text: send it as application/json")
    sub = _from_body() if raw_body else _from_form(kind)
    _check_fields(fields, where, kind, raw_body=raw_body)
    metadata = _json_field(fields, where, "metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise EntryError(422, "validation_error", f"{where} 'metadata' must be a JSON object")
    raw_webhook = _json_field(fields, where, "webhook")
    try:
        webhook = check_webhook(
            WebhookSpec.model_validate(raw_webhook) if raw_webhook is not None else None, svc.settings
        )
    except ValidationError:
        raise EntryError(422, "validation_error", f'{where} webhook must be JSON {{"url", "events"?}}') from None
    filename = check_text_param("the file's name", sub.filename)
    if kind == "cdr":
        spec = cdr_spec(
            svc.catalog[analysis],
            sub.stream,
            filename=filename,
            columns=_json_field(fields, where, "columns"),
            parameters=_json_field(fields, where, "parameters"),
            metadata=metadata,
            settings=svc.settings,
            idempotency_key=key,
        )
        return replace(spec, webhook=webhook)
    try:
        options = _options(_json_field(fields, where, "options"))
    except ValidationError as exc:
        raise EntryError(422, "validation_error", f"{where} 'options' is not valid", pydantic_details(exc)) from None
    check_options(options, svc.catalog[analysis], svc.settings)  # before the audio is read and probed
    data = sub.stream.read(svc.settings.max_audio_bytes + 1)
    spec = audio_spec(analysis, data, filename, sub.mimetype, metadata, svc.settings, key)
    return with_options(replace(spec, webhook=webhook), options, svc.catalog, svc.settings)


def _options(raw: Any) -> JobOptions | None:
    return None if raw is None else JobOptions.model_validate(raw)
