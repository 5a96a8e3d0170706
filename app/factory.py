"""The Flask application factory. Never imports torch or model code."""

from __future__ import annotations

import logging
import re
import time
import uuid

from flask import Flask, Response, g, request

from app.errors import register_error_handlers
from app.http_metrics import HTTP_LATENCY, HTTP_REQUESTS
from app.json_provider import OrjsonProvider
from app.resources import Resources
from app.routing import register_converters
from app.spool_upload import SpoolingRequest
from config import Settings, get_settings
from config.logging import bind, unbind

access_log = logging.getLogger("assay.access")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")  # echoed in a header and every log line: nothing else
_ROUTE_CONVERTER = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")  # "<job_id:job_id>" → "<job_id>" in metric labels


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or get_settings()
    app = Flask("assay")
    app.request_class = SpoolingRequest
    # werkzeug answered `//v1//jobs` with a 308 to `/v1/jobs` that bypasses the error handlers (an HTML page),
    # and sent a POST's client round again: a 404 in the one JSON shape instead, naming the path (app/errors.py).
    app.url_map.merge_slashes = False
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    app.json = OrjsonProvider(app)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["assay"] = Resources.from_settings(settings)
    # --- issue 14: rate limits, event stream, console ---
    from app import console, events_api, ratelimits, stats_api

    ratelimits.init_app(app, settings, app.extensions["assay"].redis)
    app.register_blueprint(events_api.bp)
    app.register_blueprint(console.bp)
    app.register_blueprint(stats_api.bp)
    # --- end issue 14 ---

    from app import jobs_api, meta_api, webhooks_api

    register_converters(app)

    app.register_blueprint(meta_api.bp)
    app.register_blueprint(jobs_api.bp)
    app.register_blueprint(webhooks_api.bp)
    register_error_handlers(app)

    @app.before_request
    def _request_context() -> None:
        given = request.headers.get("X-Request-Id", "")
        g.request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        g.log_token = bind(request_id=g.request_id)
        g.started = time.perf_counter()

    @app.after_request
    def _request_id_header(response: Response) -> Response:
        response.headers["X-Request-Id"] = g.get("request_id", "")
        if request.method == "OPTIONS" and response.status_code == 200 and not response.content_length:
            # Flask's automatic answer: an empty text/html 200, the one non-JSON success; no body is 204.
            response.status_code = 204
            del response.headers["Content-Type"]
        route = _ROUTE_CONVERTER.sub(r"<\1>", request.url_rule.rule) if request.url_rule else "unmatched"
        if route != "/metrics":
            elapsed = time.perf_counter() - g.get("started", time.perf_counter())
            HTTP_REQUESTS.labels(request.method, route, str(response.status_code)).inc()
            HTTP_LATENCY.labels(request.method, route).observe(elapsed)
        return response

    @app.teardown_request
    def _clear_context(_: BaseException | None) -> None:
        token = g.pop("log_token", None)
        if token is not None:
            unbind(token)

    return app
