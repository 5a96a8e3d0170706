"""The one JSON error shape: {"error": {"code", "message", "details"}} for every failure."""

from __future__ import annotations

import contextlib
import errno
import logging
import re
import socket
from typing import Any

from flask import Flask, Response, current_app, jsonify, request
from gunicorn.http.errors import NoMoreData, ParseException
from redis import RedisError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from app.spool_upload import BodyCutShortError, BodyTimeoutError, MalformedFormError
from store.db import unreachable
from store.secrets_box import SecretsKeyError

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 2
#: A file the server writes (a spooled upload, a temporary file of the form parser) that the disk refused
#: for lack of room: the server's trouble, and over once an operator or the upload sweep frees space.
STORAGE_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})
#: A file larger than the file system or the process's file-size limit takes: the same upload fails every
#: time, so it is a 413 (larger than this server is able to process), not a 503 to retry.
FILE_TOO_LARGE = errno.EFBIG
#: Longer than a dependency's restart: space comes back when someone acts, not in two seconds.
STORAGE_RETRY_AFTER_SECONDS = 30


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}


def error_response(status: int, code: str, message: str, details: Any = None) -> Response:
    response = jsonify({"error": {"code": code, "message": message, "details": details}})
    response.status_code = status
    return response


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
    415: "unsupported_media_type",
}


#: Paths shaped like a job's or an event's route whose id no job or event could have: (shape, code, noun).
_NOT_FOUND_UNDER = (
    (re.compile(r"/v1/jobs/(?P<id>[^/]+)(/cancel|/webhooks)?"), "job_not_found", "job"),
    (re.compile(r"/v1/webhooks/(?P<id>[^/]+)/redeliver"), "webhook_event_not_found", "webhook event"),
)


def _is_route(path: str) -> bool:
    """Whether `path` names a route, whatever its methods (`/v1/jobs/` answers 404, while `/v1/jobs` exists)."""
    try:
        current_app.url_map.bind("").match(path, method=request.method)
    except MethodNotAllowed:
        return True
    except HTTPException:
        return False
    return True


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        response = error_response(exc.status, exc.code, exc.message, exc.details)
        response.headers.update(exc.headers)
        return response

    @app.errorhandler(BodyCutShortError)
    def _body_cut_short(exc: BodyCutShortError) -> Response:
        response = error_response(400, "bad_request", str(exc), {"declared": exc.declared, "received": exc.received})
        response.headers["Connection"] = "close"
        return response

    @app.errorhandler(MalformedFormError)
    def _malformed_form(exc: MalformedFormError) -> Response:
        return error_response(400, "bad_request", str(exc))

    @app.errorhandler(BodyTimeoutError)
    def _body_timeout(exc: BodyTimeoutError) -> Response:
        # The rest of the body may never come: gunicorn would wait for it again before the next request.
        # Shutting the reading side makes that an end of stream, and the connection closes after the answer.
        with contextlib.suppress(KeyError, OSError):
            request.environ["gunicorn.socket"].shutdown(socket.SHUT_RD)
        response = error_response(408, "request_timeout", str(exc))
        response.headers["Connection"] = "close"
        return response

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        code = _HTTP_CODES.get(status, "http_error")
        message = exc.description or exc.name
        if status == 404:  # an id no job or event could have: say what was not found, as for any unknown id
            for shape, name, noun in _NOT_FOUND_UNDER:
                if found := shape.fullmatch(request.path):
                    code, message = name, f"no {noun} {found['id'][:80]!r}"
                    break
            else:
                if (bare := request.path.rstrip("/")) != request.path and _is_route(bare):
                    message = f"no route {request.path[:80]!r}: the API's paths have no trailing slash ({bare[:80]!r})"
                elif (single := re.sub("/{2,}", "/", request.path)) != request.path and _is_route(single):
                    message = f"no route {request.path[:80]!r}: paths have no empty segments ({single[:80]!r})"
        details = None
        if status == 413 and (limit := request.max_content_length) is not None:
            # The body limit (ASSAY_MAX_REQUEST_BYTES, or the upload limit): say which, and the declared
            # length where there is one, as every other 413 does (werkzeug's text named neither).
            details = {"limit": limit}
            if request.content_length is not None:
                details["actual"] = request.content_length
            message = f"the request body is over the limit of {limit} bytes"
        response = error_response(status, code, message, details)
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
            response.headers["Allow"] = ", ".join(sorted(exc.valid_methods))
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        """A dependency outage is a 503 the client can retry, never a 500 (PostgreSQL's error text,
        which names no user data thanks to `hide_parameters`, stays in the log)."""
        if unreachable(exc) or isinstance(exc, PoolTimeoutError):
            log.warning("PostgreSQL unavailable", extra={"error": type(exc).__name__})
            response = error_response(503, "database_unavailable", "the database is unavailable; retry shortly")
        elif isinstance(exc, SecretsKeyError):
            log.error("webhook secrets unavailable", extra={"error": str(exc)})
            response = error_response(503, "secrets_unavailable", str(exc))
        elif isinstance(exc, RedisError):
            log.warning("Redis unavailable", extra={"error": type(exc).__name__})
            response = error_response(503, "broker_unavailable", "the broker is unavailable; retry shortly")
        elif isinstance(exc, OSError) and exc.errno in STORAGE_FULL:
            log.error("upload storage refused a write", extra={"error": str(exc)})
            response = error_response(
                503, "storage_unavailable", "the server has no room to store this upload now; retry later"
            )
            response.headers["Retry-After"] = str(STORAGE_RETRY_AFTER_SECONDS)
            return response
        elif isinstance(exc, OSError) and exc.errno == FILE_TOO_LARGE:
            log.error("upload larger than the server can store", extra={"error": str(exc)})
            return error_response(413, "request_too_large", "the upload is larger than this server can store")
        elif isinstance(exc, (ParseException, NoMoreData)):
            # gunicorn found the body's chunked framing broken while the app read it: the client's fault,
            # and the rest of the connection cannot be parsed either.
            response = error_response(400, "bad_request", f"the request body is malformed: {type(exc).__name__}")
            response.headers["Connection"] = "close"
            return response
        else:
            log.exception("unhandled error")
            return error_response(500, "internal_error", "an unexpected error occurred; it has been logged")
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
