"""Turning request bodies into JobSpecs, with one error per problem and nothing created on failure."""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import re
import unicodedata
from dataclasses import replace
from typing import Any

from pydantic import ValidationError

from app.entries import EntryError, canonical_hash, check_metadata, unknown_analysis
from app.errors import ApiError
from app.offload import off_loop
from app.schemas import AudioJobCreate, CdrJobCreate, JobCreate, JobOptions, WebhookSpec
from config import Settings
from config.catalog import AnalysisConfig
from store.api import JobSpec
from webhooks.urlguard import UnsafeURLError, check_webhook_url


def pydantic_details(exc: ValidationError) -> list[dict[str, Any]]:
    return [{"loc": list(err["loc"]), "message": err["msg"], "type": err["type"]} for err in exc.errors()]


def invalid(what: str, exc: ValidationError) -> EntryError:
    """422 naming the first problem in the message: "a call-record job needs input.cdr_base64" was said
    of a job whose only fault was an `options` field call records do not take."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "the body"
    more = f" (and {exc.error_count() - 1} more in details)" if exc.error_count() > 1 else ""
    return EntryError(
        422, "validation_error", f"{what} is not valid: {where}: {first['msg']}{more}", pydantic_details(exc)
    )


def has_visible_characters(text: str) -> bool:
    """Whether the text holds anything a model reads: a letter, digit, punctuation mark or symbol.

    Zero-width and bidi controls, combining marks alone and private-use characters reach the encoder as no
    tokens at all, and a text of only those came back with a confident label for nothing. Stops at the
    first such character, so an ordinary text costs one lookup."""
    return any(unicodedata.category(char)[0] in "LNPS" for char in text)


def check_webhook(webhook: WebhookSpec | None, settings: Settings) -> dict[str, Any] | None:
    if webhook is None:
        return None
    try:
        check_webhook_url(
            webhook.url, allow_private=settings.webhook_allow_private, max_chars=settings.max_webhook_url_chars
        )
    except UnsafeURLError as exc:
        raise EntryError(422, exc.code, exc.message, {"url": webhook.url}) from None
    return {"url": webhook.url, "events": sorted(set(webhook.events))}


def validate_job(
    payload: Any,
    settings: Settings,
    catalog: dict[str, AnalysisConfig],
    idempotency_key: str | None = None,
    default_webhook: dict[str, Any] | None = None,
) -> JobSpec:
    """One job entry → JobSpec, or EntryError with the status and code the API documents."""
    if not isinstance(payload, dict):
        raise EntryError(422, "validation_error", "a job must be a JSON object")
    spec = _validate_job(payload, settings, catalog, idempotency_key)
    webhook = spec.webhook or default_webhook
    if webhook is None:
        return spec
    request_hash = spec.request_hash and canonical_hash([spec.request_hash, webhook])
    return replace(spec, webhook=webhook, request_hash=request_hash)


def _validate_job(
    payload: dict[str, Any], settings: Settings, catalog: dict[str, AnalysisConfig], idempotency_key: str | None
) -> JobSpec:
    analysis = payload.get("analysis")
    if analysis is None:
        raise EntryError(
            422, "validation_error", "field 'analysis' is required", [{"loc": ["analysis"], "message": "required"}]
        )
    if not isinstance(analysis, str) or analysis not in catalog:
        raise unknown_analysis(analysis, catalog)
    if catalog[analysis].input == "audio":
        return _audio_job(payload, settings, catalog, idempotency_key)
    if catalog[analysis].input == "cdr":
        return _cdr_job(payload, settings, catalog[analysis], idempotency_key)
    plain = _plain_text_job(payload)
    if plain is not None:
        return _text_spec(analysis, *plain, None, None, settings, catalog, idempotency_key)
    try:
        job = JobCreate.model_validate(payload)
    except ValidationError as exc:
        raise invalid("the job", exc) from None
    return _text_spec(
        job.analysis, job.input.text, job.metadata, job.webhook, job.options, settings, catalog, idempotency_key
    )


_PLAIN_TEXT_JOB_KEYS = frozenset({"analysis", "input", "metadata"})


def _plain_text_job(payload: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(text, metadata) of an entry that is only `analysis`, `input.text` and perhaps `metadata`, or None.

    Nearly every text job has that shape, and for it JobCreate's checks come down to these type tests:
    JobCreate's validation and dump were ~4 of the ~10 µs a batch entry spent here. Anything else
    (options, a webhook, a wrong type, an unknown field) goes through JobCreate, which words its errors."""
    if not payload.keys() <= _PLAIN_TEXT_JOB_KEYS:
        return None
    given = payload.get("input")
    metadata = payload.get("metadata", {})
    if type(given) is not dict or len(given) != 1 or type(metadata) is not dict:
        return None
    text = given.get("text")
    return (text, metadata) if type(text) is str else None


def _text_spec(
    analysis: str,
    text: str,
    metadata: dict[str, Any],
    webhook: WebhookSpec | None,
    job_options: JobOptions | None,
    settings: Settings,
    catalog: dict[str, AnalysisConfig],
    idempotency_key: str | None,
) -> JobSpec:
    if not text.strip():
        raise EntryError(422, "empty_text", "input.text is empty")
    if not has_visible_characters(text):
        raise EntryError(422, "empty_text", "input.text has no letters, digits, punctuation or symbols")
    if len(text) > settings.max_text_chars:
        raise EntryError(
            413,
            "input_too_large",
            f"input.text has {len(text)} characters; the limit is {settings.max_text_chars}",
            {"limit": settings.max_text_chars, "actual": len(text)},
        )
    check_metadata(metadata, settings)
    options, use_cache = check_options(job_options, catalog[analysis], settings)
    body = {"analysis": analysis, "input": {"text": text}, "metadata": metadata}
    if job_options is not None:
        body["options"] = job_options.model_dump()
    return JobSpec(
        analysis=analysis,
        input=body["input"],
        metadata=metadata,
        idempotency_key=idempotency_key,
        request_hash=canonical_hash(body) if idempotency_key else None,
        webhook=check_webhook(webhook, settings),
        options=options,
        use_cache=use_cache,
    )


#: Engines whose forward pass already yields the sentence embedding (models.prototype.PrototypeBank).
EMBEDDING_ENGINES = ("embedding-prototype", "embedding-head", "sentence-embedding")


def check_options(
    options: JobOptions | None, analysis: AnalysisConfig, settings: Settings
) -> tuple[dict[str, Any] | None, bool]:
    """(the options the worker must honour, or None; whether the cache may serve the job)."""
    if options is None:
        return None, True
    if options.return_embedding:
        from config.catalog import model_choice

        if analysis.input != "text" or model_choice(settings, analysis).engine not in EMBEDDING_ENGINES:
            raise EntryError(
                422,
                "option_not_supported",
                f"return_embedding needs a text analysis served by the sentence encoder; {analysis.name} is not",
                {"option": "return_embedding", "analysis": analysis.name},
            )
    wanted = {name: True for name in ("return_embedding", "return_diagnostics") if getattr(options, name)}
    return wanted or None, options.cache


def _audio_job(
    payload: dict[str, Any], settings: Settings, catalog: dict[str, AnalysisConfig], idempotency_key: str | None
) -> JobSpec:
    try:
        job = AudioJobCreate.model_validate(payload)
    except ValidationError as exc:
        raise invalid("an audio job (input.audio_base64)", exc) from None
    if len(job.input.audio_base64) > settings.max_audio_bytes * 4 // 3 + 4:
        raise _too_large(settings, len(job.input.audio_base64) * 3 // 4)
    try:
        data = base64.b64decode(job.input.audio_base64, validate=True)
    except (binascii.Error, ValueError):
        raise EntryError(422, "invalid_base64", "input.audio_base64 is not valid base64") from None
    check_options(job.options, catalog[job.analysis], settings)  # before the probe: an option error costs nothing
    spec = audio_spec(job.analysis, data, job.input.filename, None, job.metadata, settings, idempotency_key)
    return with_options(replace(spec, webhook=check_webhook(job.webhook, settings)), job.options, catalog, settings)


def with_options(
    spec: JobSpec, options: JobOptions | None, catalog: dict[str, AnalysisConfig], settings: Settings
) -> JobSpec:
    """`spec` with the request's options (what the worker honours, whether the cache may serve it), and the
    options in its Idempotency-Key hash: the same key with other options is another request."""
    wanted, use_cache = check_options(options, catalog[spec.analysis], settings)
    request_hash = spec.request_hash
    if request_hash and options is not None:
        request_hash = canonical_hash([request_hash, options.model_dump()])
    return replace(spec, options=wanted, use_cache=use_cache, request_hash=request_hash)


def _cdr_job(
    payload: dict[str, Any], settings: Settings, config: AnalysisConfig, idempotency_key: str | None
) -> JobSpec:
    """A call-record file as base64 in JSON (bounded by ASSAY_MAX_REQUEST_BYTES; multipart takes larger)."""
    from app.cdr_input import cdr_spec

    try:
        job = CdrJobCreate.model_validate(payload)
    except ValidationError as exc:
        raise invalid("a call-record job (input.cdr_base64)", exc) from None
    try:
        data = base64.b64decode(job.input.cdr_base64, validate=True)
    except (binascii.Error, ValueError):
        raise EntryError(422, "invalid_base64", "input.cdr_base64 is not valid base64") from None
    spec = cdr_spec(
        config,
        io.BytesIO(data),
        filename=job.input.filename,
        columns=job.input.columns,
        parameters=job.parameters,
        metadata=job.metadata,
        settings=settings,
        idempotency_key=idempotency_key,
    )
    return replace(spec, webhook=check_webhook(job.webhook, settings))


def _too_large(settings: Settings, actual: int) -> EntryError:
    """413; an upload is read only to one byte past the limit, so its real size is not known: no `actual`."""
    limit = settings.max_audio_bytes
    if actual == limit + 1:
        return EntryError(413, "audio_too_large", f"the audio is over {limit} bytes, the limit", {"limit": limit})
    return EntryError(
        413, "audio_too_large", f"the audio is {actual} bytes; the limit is {limit}", {"limit": limit, "actual": actual}
    )


def audio_spec(
    analysis: str,
    data: bytes,
    filename: str | None,
    content_type: str | None,
    metadata: dict[str, Any],
    settings: Settings,
    idempotency_key: str | None,
) -> JobSpec:
    """Check an upload cheaply (size, container header, duration) before anything is stored."""
    from models.audio import InvalidAudio, probe_audio  # PyAV only: the API never imports torch

    if not data:
        raise EntryError(422, "empty_audio", "the audio file is empty")
    if len(data) > settings.max_audio_bytes:
        raise _too_large(settings, len(data))
    try:
        info = off_loop(
            probe_audio, data, max_seconds=settings.max_audio_seconds, deadline_seconds=settings.audio_probe_seconds
        )
    except InvalidAudio as exc:
        # Too long is a limit passed (413, as when the header states the length); the rest is unusable audio.
        raise EntryError(413 if exc.code == "audio_too_long" else 422, exc.code, exc.message) from None
    if info.duration_seconds > settings.max_audio_seconds:
        raise EntryError(
            413,
            "audio_too_long",
            f"the audio lasts {info.duration_seconds:.1f} s; the limit is {settings.max_audio_seconds:.0f} s",
            {"limit": settings.max_audio_seconds, "actual": round(info.duration_seconds, 3)},
        )
    check_metadata(metadata, settings)
    digest = hashlib.sha256(data).hexdigest()
    described = {
        "audio": {
            "bytes": len(data),
            "sha256": digest,
            "duration": round(info.duration_seconds, 3),
            "codec": info.codec,
            "sample_rate": info.sample_rate,
            "filename": filename,
        }
    }
    body = {"analysis": analysis, "input": described, "metadata": metadata}
    return JobSpec(
        analysis=analysis,
        input=described,
        metadata=metadata,
        idempotency_key=idempotency_key,
        request_hash=canonical_hash(body) if idempotency_key else None,
        blob=data,
        blob_content_type=content_type or "application/octet-stream",
    )


#: Standard base64, padded (what `base64.b64decode(..., validate=True)` takes); published in the OpenAPI document.
BASE64_PATTERN = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
#: 1-200 printable ASCII characters, no space at either end (published in the OpenAPI document).
IDEMPOTENCY_KEY_PATTERN = r"^[!-~](?:[ -~]{0,198}[!-~])?$"


def idempotency_key_from(header: str | None) -> str | None:
    if header is None:
        return None
    if not re.fullmatch(IDEMPOTENCY_KEY_PATTERN, header):
        raise ApiError(400, "invalid_idempotency_key", "Idempotency-Key must be 1-200 printable ASCII characters")
    return header
