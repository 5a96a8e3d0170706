"""/v1/jobs: submit, batch submit, read (with long-poll wait), list, cancel, erase."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from typing import Any

from flask import Blueprint, Response, g, jsonify, request
from pydantic import ValidationError

from app.auth import authenticate
from app.errors import ApiError
from app.schemas import WebhookSpec
from app.serialize import decode_cursor, encode_cursor, event_json, job_json
from app.services import Services, services
from app.validation import EntryError, audio_spec, check_webhook, idempotency_key_from, validate_job
from store import jobs as store_jobs
from store import webhooks as store_webhooks
from store.notify import FinishWaiter, notify_finished
from store.tables import FINAL_STATUSES
from store.webhooks import create_events
from tasks.dispatch import publish_jobs, queue_for
from tasks.metrics import JOBS_SUBMITTED
from tasks.webhooks import publish_deliveries

log = logging.getLogger(__name__)

bp = Blueprint("jobs", __name__, url_prefix="/v1/jobs")
bp.before_request(authenticate)


def _json_body() -> Any:
    if not request.mimetype or request.mimetype != "application/json":
        raise ApiError(
            415,
            "unsupported_media_type",
            "send the body as application/json (or multipart/form-data to upload audio to /v1/jobs)",
        )
    raw = request.get_data(cache=False)
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}") from None


_depths: dict[str, tuple[int, float]] = {}
DEPTH_CACHE_SECONDS = 0.25


def _queue_depth(svc: Services, queue: str) -> int:
    """LLEN, re-read at most every 250 ms per process: a soft bound does not need a round trip per request."""
    now = time.monotonic()
    cached = _depths.get(queue)
    if cached and now - cached[1] < DEPTH_CACHE_SECONDS:
        return cached[0]
    depth = int(svc.redis.llen(queue))
    _depths[queue] = (depth, now)
    return depth


def _check_queue_depth(svc: Services, analyses: set[str], adding: int) -> None:
    """Back-pressure: refuse new work while a queue is past its bound, rather than grow it forever."""
    for queue in {queue_for(svc.settings, a) for a in analyses}:
        depth = _queue_depth(svc, queue)
        if depth + adding > svc.settings.max_queue_depth:
            raise ApiError(
                503,
                "queue_full",
                f"queue {queue} holds {depth} messages; try again shortly",
                {"queue": queue, "depth": depth, "limit": svc.settings.max_queue_depth},
                headers={"Retry-After": "5"},
            )


def _create(svc: Services, specs: list[store_jobs.JobSpec]) -> tuple[list[dict[str, Any]], bool]:
    """Commit the rows, then publish. A failed publish leaves them for the sweeper: never lost."""
    with svc.db.begin() as conn:
        try:
            created = store_jobs.create_jobs(conn, g.tenant, specs)
        except store_jobs.IdempotencyConflictError:
            raise ApiError(
                409, "idempotency_key_reused", "this Idempotency-Key was used with a different request body"
            ) from None
    if created.created:
        for row in created.rows:
            JOBS_SUBMITTED.labels(row["analysis"]).inc()
        try:
            publish_jobs(svc.celery, svc.settings, [(r["id"], r["analysis"]) for r in created.rows])
        except Exception:
            log.exception("publish failed; the sweeper will publish these jobs", extra={"jobs": len(created.rows)})
            with svc.db.begin() as conn:
                store_jobs.mark_not_enqueued(conn, [r["id"] for r in created.rows])
    return [job_json(r) for r in created.rows], created.created


def _details(exc: ValidationError) -> list[dict[str, Any]]:
    return [{"loc": list(err["loc"]), "message": err["msg"]} for err in exc.errors()]


def _upload(svc: Services, key: str | None) -> store_jobs.JobSpec:
    """multipart/form-data: `analysis`, `file` (the audio), optional `metadata` (a JSON object)."""
    form, files = request.form, request.files
    analysis = form.get("analysis")
    if not analysis:
        raise EntryError(422, "validation_error", "form field 'analysis' is required")
    if analysis not in svc.catalog:
        raise EntryError(422, "unknown_analysis", f"analysis {analysis!r} is not served here", sorted(svc.catalog))
    if svc.catalog[analysis].input != "audio":
        raise EntryError(422, "validation_error", f"{analysis} takes text: send it as application/json")
    upload = files.get("file")
    if upload is None:
        raise EntryError(
            422,
            "missing_file",
            "send the audio in a form field named 'file'",
            {"received_files": sorted(files), "received_fields": sorted(form)},
        )
    try:
        metadata = json.loads(form.get("metadata") or "{}")
    except json.JSONDecodeError:
        metadata = None
    if not isinstance(metadata, dict):
        raise EntryError(422, "validation_error", "form field 'metadata' must be a JSON object")
    try:
        raw_webhook = form.get("webhook")
        webhook = check_webhook(WebhookSpec.model_validate_json(raw_webhook) if raw_webhook else None, svc.settings)
    except ValidationError:
        raise EntryError(422, "validation_error", 'form field webhook must be JSON {"url", "events"?}') from None
    data = upload.read(svc.settings.max_audio_bytes + 1)
    spec = audio_spec(analysis, data, upload.filename, upload.mimetype, metadata, svc.settings, key)
    return replace(spec, webhook=webhook)


@bp.post("")
def create_job() -> Response:
    svc = services()
    key = idempotency_key_from(request.headers.get("Idempotency-Key"))
    try:
        if request.mimetype == "multipart/form-data":
            spec = _upload(svc, key)
        else:
            spec = validate_job(_json_body(), svc.settings, svc.catalog, key)
    except EntryError as exc:
        raise exc.as_api_error() from None
    _check_queue_depth(svc, {spec.analysis}, 1)
    (job,), created = _create(svc, [spec])
    response = jsonify(job)
    response.status_code = 202 if created else 200
    response.headers["Location"] = f"/v1/jobs/{job['id']}"
    return response


@bp.post("/batch")
def create_batch() -> Response:
    svc = services()
    key = idempotency_key_from(request.headers.get("Idempotency-Key"))
    body = _json_body()
    entries = body.get("jobs") if isinstance(body, dict) else None
    if not isinstance(body, dict) or set(body) - {"jobs", "webhook"} or not isinstance(entries, list):
        raise ApiError(422, "validation_error", 'the body must be {"jobs": [ ... ], "webhook"?: {...}}')
    try:
        batch_webhook = check_webhook(
            WebhookSpec.model_validate(body["webhook"]) if body.get("webhook") is not None else None, svc.settings
        )
    except ValidationError as exc:
        raise ApiError(422, "validation_error", "webhook is not valid", _details(exc)) from None
    except EntryError as exc:
        raise exc.as_api_error() from None
    if not entries:
        raise ApiError(422, "empty_batch", "jobs must hold at least one job")
    limit = svc.settings.max_jobs_per_batch
    if len(entries) > limit:
        raise ApiError(
            413,
            "batch_too_large",
            f"{len(entries)} jobs in one batch; the limit is {limit}",
            {"limit": limit, "actual": len(entries)},
        )
    specs, errors = [], []
    for index, entry in enumerate(entries):
        try:
            specs.append(
                validate_job(entry, svc.settings, svc.catalog, f"{key}#{index}" if key else None, batch_webhook)
            )
        except EntryError as exc:
            errors.append({"index": index, "code": exc.code, "message": exc.message, "details": exc.details})
    if errors:
        raise ApiError(
            422, "invalid_jobs", f"{len(errors)} of {len(entries)} jobs are invalid; none was created", errors
        )
    _check_queue_depth(svc, {s.analysis for s in specs}, len(specs) // svc.settings.publish_chunk_size + 1)
    jobs, created = _create(svc, specs)
    response = jsonify({"data": jobs})
    response.status_code = 202 if created else 200
    return response


def _load(svc: Services, job_id: str) -> dict[str, Any]:
    with svc.db.connect() as conn:
        row = store_jobs.get_job(conn, g.tenant, job_id)
    if row is None:
        raise ApiError(404, "job_not_found", f"no job {job_id!r}")
    return job_json(row)


def _wait_seconds(svc: Services) -> float:
    raw = request.args.get("wait")
    if raw is None:
        return 0
    try:
        wait = float(raw)
    except ValueError:
        wait = -1
    if not 0 <= wait <= svc.settings.max_wait_seconds:
        raise ApiError(
            400, "invalid_wait", f"wait must be a number of seconds from 0 to {svc.settings.max_wait_seconds}"
        )
    return wait


@bp.get("/<job_id>")
def get_job(job_id: str) -> Response:
    """With ?wait=N: answer when the job is final or after N s, holding no DB connection meanwhile."""
    svc = services()
    wait = _wait_seconds(svc)
    job = _load(svc, job_id)
    if wait and job["status"] not in FINAL_STATUSES:
        with FinishWaiter(svc.redis, job_id) as waiter:
            job = _load(svc, job_id)  # re-check after subscribing: no notification can slip by
            if job["status"] not in FINAL_STATUSES:
                waiter.wait(wait)
                job = _load(svc, job_id)
    return jsonify(job)


@bp.get("")
def list_jobs() -> Response:
    svc = services()
    args = request.args
    status = args.get("status") or None
    if status and status not in ("queued", "running", "succeeded", "failed", "canceled"):
        raise ApiError(400, "invalid_status", f"unknown status {status!r}")
    try:
        limit = int(args.get("limit", 50))
    except ValueError:
        limit = 0
    if not 1 <= limit <= svc.settings.list_max_limit:
        raise ApiError(400, "invalid_limit", f"limit must be an integer from 1 to {svc.settings.list_max_limit}")
    cursor = args.get("cursor")
    before = decode_cursor(cursor) if cursor else None
    with svc.db.connect() as conn:
        rows = store_jobs.list_jobs(
            conn, g.tenant, limit=limit + 1, status=status, analysis=args.get("analysis") or None, before=before
        )
    page = rows[:limit]
    next_cursor = encode_cursor(page[-1]) if len(rows) > limit else None
    return jsonify({"data": [job_json(r) for r in page], "next_cursor": next_cursor})


def _publish_events(svc: Services, event_ids: list[str]) -> None:
    """After commit; if the broker is down the webhook sweeper sends them later."""
    try:
        publish_deliveries(svc.celery, svc.settings, event_ids)
    except Exception:
        log.exception("webhook publish failed; the webhook sweeper will send these", extra={"events": event_ids})


@bp.get("/<job_id>/webhooks")
def job_webhooks(job_id: str) -> Response:
    """Every webhook event of a job, each with its attempts (status code, latency, error, next try)."""
    svc = services()
    with svc.db.connect() as conn:
        if store_jobs.get_job(conn, g.tenant, job_id) is None:
            raise ApiError(404, "job_not_found", f"no job {job_id!r}")
        events = store_webhooks.events_for_job(conn, g.tenant, job_id)
    return jsonify({"data": [event_json(e) for e in events]})


@bp.post("/<job_id>/cancel")
def cancel_job(job_id: str) -> Response:
    svc = services()
    with svc.db.begin() as conn:
        outcome = store_jobs.cancel_job(conn, g.tenant, job_id)
        events = create_events(conn, [job_id], svc.settings.webhook_publish_grace_seconds) if outcome else []
    if outcome is None:
        raise ApiError(404, "job_not_found", f"no job {job_id!r}")
    row, before = outcome
    if before not in ("queued", "running"):
        raise ApiError(409, "job_not_cancelable", f"the job is already {before}", {"job": job_json(row)})
    notify_finished(svc.redis, [job_id])
    _publish_events(svc, events)
    return jsonify({"job": job_json(row), "cancellation": "immediate" if before == "queued" else "best_effort"})


@bp.delete("/<job_id>")
def erase_job(job_id: str) -> Response:
    svc = services()
    with svc.db.begin() as conn:
        row = store_jobs.erase_job(conn, g.tenant, job_id)
    if row is None:
        raise ApiError(404, "job_not_found", f"no job {job_id!r}")
    return jsonify(job_json(row))
