"""/v1/webhooks: the tenant's signing secret (show, rotate) and redelivery of one event."""

from __future__ import annotations

from flask import Blueprint, Response, g, jsonify

from app.auth import authenticate
from app.errors import ApiError
from app.services import services
from store import webhooks as store_webhooks
from tasks.webhooks import publish_deliveries

bp = Blueprint("webhooks", __name__, url_prefix="/v1/webhooks")
bp.before_request(authenticate)


@bp.get("/secret")
def show_secret() -> Response:
    svc = services()
    with svc.db.connect() as conn:
        return jsonify(store_webhooks.secret_info(conn, g.tenant))


@bp.post("/secret/rotate")
def rotate_secret() -> Response:
    """A new secret at once; the previous one keeps signing beside it for the grace period."""
    svc = services()
    with svc.db.begin() as conn:
        return jsonify(store_webhooks.rotate_secret(conn, g.tenant, svc.settings.webhook_secret_grace_seconds))


@bp.post("/<event_id>/redeliver")
def redeliver(event_id: str) -> Response:
    """Send an event once more, with the same webhook-id; the attempt is recorded like any other."""
    svc = services()
    with svc.db.begin() as conn:
        before = store_webhooks.redeliver(conn, g.tenant, event_id, svc.settings.webhook_publish_grace_seconds)
    if before is None:
        raise ApiError(404, "webhook_event_not_found", f"no webhook event {event_id!r}")
    if before == "delivering":
        raise ApiError(409, "webhook_delivery_in_progress", "the event is being delivered right now; try again")
    publish_deliveries(svc.celery, svc.settings, [event_id])
    response = jsonify({"id": event_id, "status": "pending", "previous_status": before})
    response.status_code = 202
    return response
