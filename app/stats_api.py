"""GET /v1/stats: the console's "at a glance" figures for the key's tenant, and the shared queues' depth."""

from __future__ import annotations

from flask import Blueprint, Response, g, jsonify

from app.auth import authenticate
from app.backpressure import queue_depth
from app.ratelimits import rate_limits
from app.request_json import check_query
from app.resources import resources
from store.stats import tenant_counts

bp = Blueprint("stats", __name__, url_prefix="/v1/stats")
bp.before_request(authenticate)

WINDOW_SECONDS = 60


@bp.get("")
def stats() -> Response:
    """Queued and running jobs, jobs finished in the last minute (and per second), each queue's depth."""
    svc = resources()
    check_query(frozenset())
    with svc.db.connect() as conn:
        counts = tenant_counts(conn, g.tenant, WINDOW_SECONDS)
    families = sorted({a.family for a in svc.catalog.values()})
    queues = {svc.settings.queue_name(f): queue_depth(svc, f) for f in families}  # queue_depth names the queue
    limits = rate_limits().for_tenant(svc, g.tenant)
    return jsonify(
        {
            "queued": counts.queued,
            "running": counts.running,
            "finished_last_minute": counts.finished,
            "failed_last_minute": counts.failed,
            "throughput_per_second": round(counts.finished / WINDOW_SECONDS, 3),
            "queue_depth": queues,
            "quota": {"queued_jobs": limits.tenant_max_queued_jobs, "jobs_per_minute": limits.rate_jobs_per_minute},
        }
    )
