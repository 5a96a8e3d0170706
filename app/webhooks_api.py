"""/v1/webhooks: the tenant's signing secret (show, rotate) and redelivery of one event."""

from __future__ import annotations

from flask import Blueprint, Response, g, jsonify, request
from pydantic import ValidationError

from app.auth import authenticate
from app.errors import ApiError
from app.request_json import check_query, json_body
from app.resources import resources
from app.schemas import SecretRotation
from app.validation import invalid
from contract.documents import iso_timestamp
from store import api as store
from store.tables import EventStatus
from store.webhook_secrets import SecretInfo, rotate_secret, secret_info

bp = Blueprint("webhooks", __name__, url_prefix="/v1/webhooks")
bp.before_request(authenticate)


def _secret_json(info: SecretInfo) -> dict[str, str | None]:
    return {"secret": info.secret, "previous_secret_expires_at": iso_timestamp(info.previous_expires_at)}


@bp.get("/secret")
def show_secret() -> Response:
    svc = resources()
    check_query(frozenset())
    with svc.db.begin() as conn:  # a tenant's first secret is made on first use
        return jsonify(_secret_json(secret_info(conn, g.tenant, svc.secret_box)))


@bp.post("/secret/rotate")
def rotate() -> Response:
    """A new secret at once; the previous ones keep signing beside it for the grace period: the
    deployment's, or `{"grace_seconds": N}` (0 after a leak)."""
    svc = resources()
    grace = svc.settings.webhook_secret_grace_seconds
    if request.content_length or request.get_data(cache=True):
        try:
            asked = SecretRotation.model_validate(json_body()).grace_seconds
        except ValidationError as exc:
            raise invalid("the rotation", exc).as_api_error() from None
        grace = grace if asked is None else asked
    check_query(frozenset())  # `?grace_seconds=0` after a leak would otherwise rotate with the default grace
    with svc.db.begin() as conn:
        return jsonify(_secret_json(rotate_secret(conn, g.tenant, grace, svc.secret_box)))


@bp.post("/<event_id:event_id>/redeliver")
def redeliver(event_id: str) -> Response:
    """Send an event once more, with the same webhook-id; the attempt is recorded like any other."""
    svc = resources()
    check_query(frozenset())
    with svc.lifecycle.transaction() as unit:
        before = store.redeliver(unit.conn, g.tenant, event_id, unit.publish_epoch)
        if before is not None and before != EventStatus.DELIVERING:
            unit.publish_events([event_id])
    if before is None:
        raise ApiError(404, "webhook_event_not_found", f"no webhook event {event_id[:80]!r}")
    if before == EventStatus.DELIVERING:
        raise ApiError(409, "webhook_delivery_in_progress", "the event is being delivered right now; try again")
    response = jsonify({"id": event_id, "status": EventStatus.PENDING, "previous_status": before})
    response.status_code = 202
    return response
