"""/v1/jobs: submit, batch submit, read (with long-poll wait), list, cancel, erase."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from functools import partial
from typing import Any

from flask import Blueprint, Response, g, jsonify, request
from pydantic import ValidationError
from sqlalchemy import Connection, RowMapping

from app.auth import authenticate
from app.backpressure import check_queue_depth
from app.cdr_input import discard_file, spooled_until_created
from app.cursors import decode_cursor, encode_cursor
from app.entries import unknown_analysis
from app.errors import ApiError
from app.group_commit import GroupCommit
from app.offload import under_gevent
from app.ratelimits import charge_jobs, open_slot
from app.request_json import check_query, check_text_param, json_body
from app.resources import Resources, resources
from app.result_cache import plan_jobs
from app.schemas import WebhookSpec
from app.uploads import is_raw_file, upload_spec
from app.validation import EntryError, check_webhook, idempotency_key_from, invalid, validate_job
from app.waiting import wait_until_final
from contract.documents import job_document, webhook_event_document
from pipeline.lifecycle import Change, Unit
from store import api as store
from store.tables import JOB_STATUSES, LIVE_STATUSES, JobStatus
from telemetry.metrics import JOBS_SUBMITTED

bp = Blueprint("jobs", __name__, url_prefix="/v1/jobs")
# Numbers in query strings as the API documents them: ASCII digits. int() and float() also take "1_0",
# " 5", "+5" and other scripts' digits, which no client means to send.
_WHOLE = re.compile(r"[0-9]{1,9}")
_DECIMAL = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_GET_PARAMETERS = frozenset({"wait"})
_LIST_PARAMETERS = frozenset({"status", "analysis", "limit", "cursor"})
bp.before_request(authenticate)


def _write(unit: Unit, svc: Resources, tenant: str, specs: list[store.JobSpec]) -> store.Created:
    """The rows of one tenant's specs in `unit`'s transaction, and what follows once it commits."""
    specs, outcomes = plan_jobs(unit.conn, svc.settings, svc.catalog, tenant, specs)
    created = store.create_jobs(unit.conn, tenant, specs, unit.publish_epoch)
    if created.created:
        # Only jobs that run are published: a hit is complete, an attached job finishes with its source.
        pairs = list(zip(created.rows, specs, strict=True))
        unit.publish_jobs([(r["id"], r["analysis"]) for r, s in pairs if s.cached is None and s.attach_to is None])
        # A hit is created finished: the stream hears of it once, as `succeeded`, from `finished` below.
        unit.created([Change(r["id"], r["analysis"], r["status"], tenant=tenant) for r, s in pairs if s.cached is None])
        unit.finished(
            [
                Change(
                    r["id"],
                    r["analysis"],
                    JobStatus.SUCCEEDED,
                    created_at=r["created_at"],
                    has_webhook=s.webhook is not None,
                    tenant=tenant,
                )
                for r, s in pairs
                if s.cached is not None
            ],
            settle_sources=False,
        )
        unit.cache_outcome(outcomes)
    return created


def _write_group(svc: Resources, requests: list[tuple[str, list[store.JobSpec]]]) -> list[tuple[list[Any], bool]]:
    """Several requests' specs in one transaction: one lookup and one INSERT per tenant, one COMMIT."""
    by_tenant: dict[str, list[int]] = {}
    for index, (tenant, _) in enumerate(requests):
        by_tenant.setdefault(tenant, []).append(index)
    results: list[tuple[list[Any], bool]] = [([], False)] * len(requests)
    with svc.lifecycle.transaction() as unit:
        for tenant, indexes in by_tenant.items():
            rows = iter(_write(unit, svc, tenant, [s for i in indexes for s in requests[i][1]]).rows)
            for i in indexes:
                results[i] = ([next(rows) for _ in requests[i][1]], True)
    return results


def _groupable(svc: Resources, specs: list[store.JobSpec]) -> bool:
    """A single text job without an Idempotency-Key: nothing in it can fail its own request alone.

    A batch has its own transaction: its commit is already shared by its jobs, and queueing it behind
    the one writer of its process cost it 5-10 % (bench.api's batch rows, measured with and without)."""
    return (
        len(specs) == 1
        and svc.settings.group_commit_max > 0
        and under_gevent()
        and all(s.idempotency_key is None and s.blob is None and svc.catalog[s.analysis].input == "text" for s in specs)
    )


def _create(svc: Resources, specs: list[store.JobSpec]) -> tuple[list[dict[str, Any]], bool]:
    """Commit the rows, then publish. A failed publish leaves them for the sweeper: never lost."""
    if _groupable(svc, specs):
        if svc.group_commit is None:
            svc.group_commit = GroupCommit(partial(_write_group, svc), svc.settings.group_commit_max)
        rows, created = svc.group_commit.submit(g.tenant, specs)
    else:
        with svc.lifecycle.transaction() as unit:
            try:
                written = _write(unit, svc, g.tenant, specs)
            except store.IdempotencyConflictError:
                raise _key_reused() from None
        rows, created = written.rows, written.created
    if created:
        for analysis, count in Counter(row["analysis"] for row in rows).items():
            JOBS_SUBMITTED.labels(analysis).inc(count)
    return [job_document(r) for r in rows], created


@bp.post("")
def create_job() -> Response:
    svc = resources()
    key = idempotency_key_from(request.headers.get("Idempotency-Key"))
    try:
        if request.mimetype == "multipart/form-data" or is_raw_file(request.mimetype):
            if request.mimetype == "multipart/form-data":  # a file sent as the body has its fields in the query
                check_query(frozenset())
            # Call-record files are far larger than the JSON limit; they are spooled to disk as they arrive.
            request.max_content_length = max(svc.settings.max_request_bytes, svc.settings.max_cdr_bytes + 2**20)
            spec = upload_spec(svc, key, raw_body=request.mimetype != "multipart/form-data")
        else:
            body = json_body()  # first: a body of the wrong type is a 415 whatever the query says
            check_query(frozenset())  # ?wait=10 on a submission would otherwise be dropped: it never waits
            spec = validate_job(body, svc.settings, svc.catalog, key)
    except EntryError as exc:
        raise exc.as_api_error() from None
    with spooled_until_created([spec], svc.settings) as outcome:
        charge_jobs(1, partial(check_queue_depth, svc, {spec.analysis: 1}, 1))
        (job,), created = outcome.record(_create(svc, [spec]))
    response = jsonify(job)
    response.status_code = 202 if created else 200
    response.headers["Location"] = f"/v1/jobs/{job['id']}"
    return response


@bp.post("/batch")
def create_batch() -> Response:
    svc = resources()
    key = idempotency_key_from(request.headers.get("Idempotency-Key"))
    body = json_body()
    check_query(frozenset())
    entries = body.get("jobs") if isinstance(body, dict) else None
    if not isinstance(body, dict) or set(body) - {"jobs", "webhook"} or not isinstance(entries, list):
        raise ApiError(422, "validation_error", 'the body must be {"jobs": [ ... ], "webhook"?: {...}}')
    try:
        batch_webhook = check_webhook(
            WebhookSpec.model_validate(body["webhook"]) if body.get("webhook") is not None else None, svc.settings
        )
    except ValidationError as exc:
        raise invalid("webhook", exc).as_api_error() from None
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
    with spooled_until_created(specs, svc.settings) as outcome:
        if errors:
            raise ApiError(
                422, "invalid_jobs", f"{len(errors)} of {len(entries)} jobs are invalid; none was created", errors
            )
        messages = len(specs) // svc.settings.publish_chunk_size + 1
        charge_jobs(len(specs), partial(check_queue_depth, svc, Counter(s.analysis for s in specs), messages))
        jobs, created = outcome.record(_create(svc, specs))
    if not created and key is not None and _batch_was_longer(svc, key, len(specs)):
        raise _key_reused()
    response = jsonify({"data": jobs})
    response.status_code = 202 if created else 200
    return response


def _batch_was_longer(svc: Resources, key: str, replayed: int) -> bool:
    """A replay matched every entry it holds: was the original batch longer? Its first `replayed` entries
    alone are another body, and answering them as the original hid the difference from the client."""
    with svc.db.connect() as conn:
        return store.idempotency_key_used(conn, g.tenant, f"{key}#{replayed}")


def _key_reused() -> ApiError:
    return ApiError(409, "idempotency_key_reused", "this Idempotency-Key was used with a different request body")


def _not_found(job_id: str) -> ApiError:
    return ApiError(404, "job_not_found", f"no job {job_id[:80]!r}")


def _gone(row: RowMapping) -> ApiError:
    return ApiError(
        410,
        "job_erased",
        "the job was erased: its input, result and metadata are gone; details.job is what remains",
        {"job": job_document(row)},
    )


def _load(svc: Resources, job_id: str) -> dict[str, Any]:
    with svc.db.connect() as conn:
        row = store.get_job(conn, g.tenant, job_id)
    if row is None:
        raise _not_found(job_id)
    if row["erased_at"] is not None:
        raise _gone(row)
    return job_document(row)


def _wait_seconds(svc: Resources) -> float:
    raw = request.args.get("wait")
    if raw is None:
        return 0
    wait = float(raw) if _DECIMAL.fullmatch(raw) else -1
    if not 0 <= wait <= svc.settings.max_wait_seconds:
        raise ApiError(
            400,
            "invalid_wait",
            f"wait must be a number of seconds from 0 to {svc.settings.max_wait_seconds}",
            {"limit": svc.settings.max_wait_seconds},  # what a client's long-poll may ask here at most
        )
    return wait


@bp.get("/<job_id:job_id>")
def get_job(job_id: str) -> Response:
    """With ?wait=N: answer when the job is final or after N s, holding no DB connection meanwhile."""
    svc = resources()
    check_query(_GET_PARAMETERS)
    wait = _wait_seconds(svc)
    if not wait:
        return jsonify(_load(svc, job_id))
    with open_slot(wait + 5):  # a cap on open long-polls per key (app/ratelimits.py)
        return jsonify(wait_until_final(svc.redis, job_id, lambda: _load(svc, job_id), wait))


@bp.get("")
def list_jobs() -> Response:
    svc = resources()
    check_query(_LIST_PARAMETERS)
    args = request.args
    status = check_text_param("status", args.get("status"))
    if status is not None and status not in JOB_STATUSES:
        raise ApiError(400, "invalid_status", f"unknown status {status!r}")
    raw_limit = args.get("limit", "50")
    limit = int(raw_limit) if _WHOLE.fullmatch(raw_limit) else 0
    if not 1 <= limit <= svc.settings.list_max_limit:
        raise ApiError(400, "invalid_limit", f"limit must be an integer from 1 to {svc.settings.list_max_limit}")
    cursor = args.get("cursor")
    before = decode_cursor(cursor) if cursor is not None else None
    analysis = _analysis_filter(svc, args.get("analysis"))
    with svc.db.connect() as conn:
        rows = store.list_jobs(
            conn,
            g.tenant,
            limit=limit + 1,
            status=status,
            analysis=analysis,
            before=before,
        )
    page = rows[:limit]
    next_cursor = encode_cursor(page[-1]) if len(rows) > limit else None
    return jsonify({"data": [job_document(r) for r in page], "next_cursor": next_cursor})


def _analysis_filter(svc: Resources, value: str | None) -> str | None:
    """An analysis this deployment serves, as in a submission: a misspelt one is refused, not an empty page
    (which would also walk every job of the tenant looking for it)."""
    check_text_param("analysis", value)
    if value is not None and value not in svc.catalog:
        raise unknown_analysis(value, svc.catalog).as_api_error()
    return value


@bp.get("/<job_id:job_id>/webhooks")
def job_webhooks(job_id: str) -> Response:
    """Every webhook event of a job, each with its attempts (status code, latency, error, next try)."""
    svc = resources()
    check_query(frozenset())
    with svc.db.connect() as conn:
        row = store.get_job(conn, g.tenant, job_id)
        if row is None:
            raise _not_found(job_id)
        if row["erased_at"] is not None:
            raise _gone(row)
        events = store.events_for_job(conn, g.tenant, job_id)
    return jsonify({"data": [webhook_event_document(event, attempts) for event, attempts in events]})


def _canceled(row: RowMapping, before: str) -> list[Change]:
    """The job-finished change of a cancel or erasure, if the job was live before it."""
    if before not in LIVE_STATUSES:
        return []
    return [
        Change(
            row["id"],
            row["analysis"],
            JobStatus.CANCELED,
            attempt=row["attempts"],
            created_at=row["created_at"],
            tenant=row["owner"],
        )
    ]


def _end(job_id: str, end: Callable[[Connection, str, str], tuple[RowMapping, str] | None]) -> tuple[RowMapping, str]:
    """Cancel or erase in one transaction; a job that was live leaves by the job-finished path, as canceled."""
    svc = resources()
    check_query(frozenset())  # neither takes any: a `?force=1` would otherwise look honoured
    with svc.lifecycle.transaction() as unit:
        outcome = end(unit.conn, g.tenant, job_id)
        if outcome is not None:
            unit.finished(_canceled(*outcome))
    if outcome is None:
        raise _not_found(job_id)
    return outcome


@bp.post("/<job_id:job_id>/cancel")
def cancel_job(job_id: str) -> Response:
    row, before = _end(job_id, store.cancel_job)
    if before not in LIVE_STATUSES:
        raise ApiError(409, "job_not_cancelable", f"the job is already {before}", {"job": job_document(row)})
    cancellation = "immediate" if before == JobStatus.QUEUED else "best_effort"
    return jsonify({"job": job_document(row), "cancellation": cancellation})


@bp.delete("/<job_id:job_id>")
def erase_job(job_id: str) -> Response:
    """Erasure; a live job is canceled by it, and that cancellation follows the job-finished path. A
    call-record job's spooled file goes once the erasure has committed (a queued one's was otherwise
    left to the upload sweep, `ASSAY_UPLOAD_GRACE_SECONDS` later)."""
    spooled: list[str | None] = []

    def erase(conn: Connection, owner: str, job_id: str) -> tuple[RowMapping, str] | None:
        spooled.append(store.spooled_file(conn, owner, job_id))
        return store.erase_job(conn, owner, job_id)

    row, _ = _end(job_id, erase)
    discard_file(spooled[0] if spooled else None, resources().settings)
    return jsonify(job_document(row))
