"""Exceptions carrying the API's own error code, message and details.

Every error the API returns has the shape {"error": {"code", "message", "details"}}; `error_from_response`
turns it into one exception class per HTTP status (and a few per code), so callers can catch
`NotFound` or `RateLimited` rather than compare numbers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any


class AssayError(Exception):
    """Base of every error this package raises."""

    status: int | None = None

    def __init__(
        self,
        message: str,
        *,
        code: str = "error",
        status: int | None = None,
        details: Any = None,
        retry_after: float | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        if status is not None:
            self.status = status
        self.details = details
        self.retry_after = retry_after
        self.request_id = request_id

    def __str__(self) -> str:
        where = f"{self.status} " if self.status else ""
        return f"{where}{self.code}: {self.message}"


class APIConnectionError(AssayError):
    """The API could not be reached (connection refused, reset, timed out), after the retries allowed."""


class WaitTimeout(AssayError):  # noqa: N818 (named for what the API said)
    """A job was still not final when the caller's wait ran out; `job` is its last known state."""

    def __init__(self, message: str, *, job: Any = None, pending: list[str] | None = None) -> None:
        super().__init__(message, code="wait_timeout")
        self.job = job
        self.pending = pending or []


class BadRequest(AssayError):  # noqa: N818 (named for what the API said)
    status = 400


class Unauthorized(AssayError):  # noqa: N818 (named for what the API said)
    status = 401


class NotFound(AssayError):  # noqa: N818 (named for what the API said)
    status = 404


class Gone(AssayError):  # noqa: N818 (named for what the API said)
    """The job was erased (DELETE): `details["job"]` holds what remains of it."""

    status = 410


class Conflict(AssayError):  # noqa: N818 (named for what the API said)
    status = 409


class IdempotencyKeyReused(Conflict):
    """The Idempotency-Key was used before with a different body: nothing was created."""


class NotCancelable(Conflict):
    """The job is already final; `details["job"]` holds it."""


class PayloadTooLarge(AssayError):  # noqa: N818 (named for what the API said)
    status = 413


class UnsupportedMediaType(AssayError):  # noqa: N818 (named for what the API said)
    status = 415


class ValidationFailed(AssayError):  # noqa: N818 (named for what the API said)
    """422: well-formed but not a valid job. For a batch, `details` lists the invalid entries by index."""

    status = 422


class RateLimited(AssayError):  # noqa: N818 (named for what the API said)
    """429; `retry_after` is the delay the API asked for, in seconds, if it said."""

    status = 429


class ServiceUnavailable(AssayError):  # noqa: N818 (named for what the API said)
    """503: back-pressure (`queue_full`) or a dependency down (`not_ready`)."""

    status = 503


class QueueFull(ServiceUnavailable):
    pass


class ServerError(AssayError):
    """Any other 5xx."""


_BY_STATUS: dict[int, type[AssayError]] = {
    400: BadRequest,
    401: Unauthorized,
    404: NotFound,
    409: Conflict,
    410: Gone,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: ValidationFailed,
    429: RateLimited,
    503: ServiceUnavailable,
}
_BY_CODE: dict[str, type[AssayError]] = {
    "idempotency_key_reused": IdempotencyKeyReused,
    "job_not_cancelable": NotCancelable,
    "queue_full": QueueFull,
}


def _plain_text(body: bytes) -> str:
    """A body that is not the API's error, in a line: an HTML page (a proxy's, another server's at the URL)
    as its text without tags, and said to be not Assay's, so a wrong ASSAY_URL is recognisable."""
    text = body[:4096].decode("utf-8", "replace")
    if "<" in text and re.search(r"<(html|head|body|title|h1|p)\b", text, re.IGNORECASE):
        title = re.search(r"<title[^>]*>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
        words = title.group(1) if title else re.sub(r"<[^>]+>", " ", text)
        return f"not an Assay API answer (an HTML page: {' '.join(words.split())[:120]}); is the URL right?"
    return " ".join(text.split())[:300]


def error_from_response(
    status: int, body: bytes, headers: Mapping[str, str], retry_after: float | None = None
) -> AssayError:
    """The exception for a non-2xx answer; bodies that are not the API's JSON shape still give a useful one."""
    code, message, details = f"http_{status}", "", None
    try:
        payload = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        payload = None
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict):
        code = str(error.get("code") or code)
        message = str(error.get("message") or "")
        details = error.get("details")
    else:
        message = _plain_text(body)
    cls = _BY_CODE.get(code) or _BY_STATUS.get(status) or (ServerError if status >= 500 else AssayError)
    return cls(
        message or f"HTTP {status}",
        code=code,
        status=status,
        details=details,
        retry_after=retry_after,
        request_id=headers.get("X-Request-ID"),
    )


def wait_limit(error: AssayError, asked: float) -> float | None:
    """The server's longest `?wait`, when `error` refused a long-poll of `asked` seconds for being longer
    (a deployment may lower ASSAY_MAX_WAIT_SECONDS below the client's `long_poll`); else None. A limit of 0
    (long-polls off) is not kept to: every poll would be answered at once, and waiting became a busy loop."""
    if not isinstance(error, BadRequest) or error.code != "invalid_wait" or not isinstance(error.details, Mapping):
        return None
    limit = error.details.get("limit")
    if isinstance(limit, int | float) and not isinstance(limit, bool) and 0 < limit < asked:
        return float(limit)
    return None
