"""Health, readiness, the analysis catalog and the OpenAPI document."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request
from sqlalchemy import text

from app.auth import authenticate
from app.errors import ApiError, error_response
from app.openapi import openapi_document
from app.request_json import check_query
from app.resources import resources
from config import Settings
from config.catalog import model_choice, model_label
from config.production import bind_port
from models.cdr.spec import CdrParameters

bp = Blueprint("meta", __name__)


@bp.get("/health")
def health() -> Response:
    """Process alive; touches no dependency, so a database outage does not restart API pods."""
    return jsonify({"status": "ok"})


@bp.get("/ready")
def ready() -> Response:
    svc = resources()
    failed: dict[str, str] = {}
    try:
        with svc.db.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        failed["postgresql"] = type(exc).__name__
    try:
        svc.redis.ping()
    except Exception as exc:
        failed["redis"] = type(exc).__name__
    if failed:
        return error_response(503, "not_ready", "unreachable: " + ", ".join(sorted(failed)), failed)
    return jsonify({"status": "ready", "checks": {"postgresql": "ok", "redis": "ok"}})


@bp.before_app_request
def _metrics_listener_serves_only_metrics() -> None:
    """With ASSAY_METRICS_BIND set, /metrics answers only on that listener and that listener answers only
    /metrics: the public port never serves metrics, the metrics port is no back door to the API.

    SERVER_PORT is the port of the socket gunicorn accepted on (its getsockname()), not the Host header.
    """
    metrics_bind = resources().settings.metrics_bind
    if not metrics_bind:
        return
    on_metrics_listener = str(request.environ.get("SERVER_PORT", "")) == bind_port(metrics_bind)
    if on_metrics_listener != (request.path == "/metrics"):
        raise ApiError(404, "not_found", "no such resource on this port")


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus exposition; under gunicorn, aggregated across its worker processes."""
    from prometheus_client import (
        CONTENT_TYPE_LATEST,
        REGISTRY,
        CollectorRegistry,
        generate_latest,
        multiprocess,
        values,
    )

    from telemetry.metrics import QueueDepthCollector

    svc = resources()
    if values.ValueClass is values.MutexValue:  # one process: the default registry holds everything
        registry = CollectorRegistry()
        registry.register(_Forward(REGISTRY))
    else:  # PROMETHEUS_MULTIPROC_DIR was set by gunicorn.conf.py before the workers started
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    queues = sorted({svc.settings.queue_name(a.family) for a in svc.catalog.values()})
    registry.register(QueueDepthCollector(svc.redis, [*queues, svc.settings.maintenance_queue]))
    # content_type, not mimetype: werkzeug appends "; charset=utf-8" to a mimetype, and the doubled charset
    # makes Prometheus 3 (Go's mime.ParseMediaType) refuse the scrape.
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


class _Forward:
    def __init__(self, registry: object) -> None:
        self.registry = registry

    def collect(self):
        return self.registry.collect()  # type: ignore[attr-defined]


@bp.get("/openapi.json")
def openapi() -> Response:
    svc = resources()
    document = current_app.extensions.get("assay.openapi")
    if document is None:
        document = current_app.extensions["assay.openapi"] = openapi_document(svc.settings, svc.catalog)
    return jsonify(document)


def _limits(kind: str, s: Settings) -> dict[str, float]:
    common = {"max_metadata_bytes": s.max_metadata_bytes, "max_jobs_per_batch": s.max_jobs_per_batch}
    if kind == "audio":
        return {**common, "max_audio_bytes": s.max_audio_bytes, "max_audio_seconds": s.max_audio_seconds}
    if kind == "cdr":  # multipart takes files up to max_cdr_bytes; base64 in JSON is bounded by the request
        return {**common, "max_cdr_bytes": s.max_cdr_bytes, "max_cdr_line_bytes": s.max_cdr_line_bytes,
                "max_request_bytes": s.max_request_bytes}  # fmt: skip
    return {**common, "max_text_chars": s.max_text_chars, "max_model_tokens": s.max_model_tokens}


def _parameter_defaults(defaults: dict[str, float]) -> dict[str, float] | None:
    """As a job's result reports them: whole numbers where the parameter is one (50, not 50.0). A catalog
    default out of range is listed as written (its jobs are refused with invalid_parameters), not a 500."""
    try:
        return CdrParameters.resolve(None, defaults).to_json()
    except ValueError:
        return defaults or None


@bp.get("/v1/analyses")
def analyses() -> Response:
    authenticate()
    check_query(frozenset())  # as every other /v1 route: a misspelt filter is an error, not ignored
    svc = resources()
    s = svc.settings
    data = [
        {
            "name": a.name,
            "description": a.description,
            "input": a.input,
            "family": a.family,
            "queue": s.queue_name(a.family),
            "engine": model_choice(s, a).engine,
            "model": model_label(s, a),
            "labels": list(a.labels),
            "flag_label": a.flag_label,
            "verdicts": a.verdicts,
            "pipeline": {"steps": a.steps, "then": a.then} if a.engine == "pipeline" else None,
            "parameters": _parameter_defaults(a.parameters) if a.input == "cdr" else None,
            "limits": _limits(a.input, s),
        }
        for a in svc.catalog.values()
    ]
    return jsonify({"data": data})
