"""Health, readiness, the analysis catalog and the OpenAPI document."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from sqlalchemy import text

from app.auth import authenticate
from app.openapi import openapi_document
from app.services import services

bp = Blueprint("meta", __name__)


@bp.get("/health")
def health() -> Response:
    """Process alive; touches no dependency, so a database outage does not restart API pods."""
    return jsonify({"status": "ok"})


@bp.get("/ready")
def ready() -> Response:
    svc = services()
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
        response = jsonify(
            {
                "error": {
                    "code": "not_ready",
                    "message": "unreachable: " + ", ".join(sorted(failed)),
                    "details": failed,
                }
            }
        )
        response.status_code = 503
        return response
    return jsonify({"status": "ready", "checks": {"postgresql": "ok", "redis": "ok"}})


@bp.get("/openapi.json")
def openapi() -> Response:
    return jsonify(openapi_document())


@bp.get("/v1/analyses")
def analyses() -> Response:
    authenticate()
    svc = services()
    s = svc.settings
    data = [
        {
            "name": a.name,
            "description": a.description,
            "input": a.input,
            "family": a.family,
            "queue": s.queue_name(a.family),
            "model": (s.text_model_path or "all-MiniLM-L6-v2") + f"+{a.name}-prototypes-v{a.version}",
            "labels": list(a.labels),
            "limits": {
                "max_text_chars": s.max_text_chars,
                "max_model_tokens": s.max_model_tokens,
                "max_metadata_bytes": s.max_metadata_bytes,
                "max_jobs_per_batch": s.max_jobs_per_batch,
            },
        }
        for a in svc.catalog.values()
    ]
    return jsonify({"data": data})
