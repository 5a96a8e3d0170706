"""The sans-I/O half of the clients: requests as values, the retry decision, and reading answers.

The sync and async clients differ only in how they send and sleep; what to send, whether to
try again, and what an answer means is decided here once.
"""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote

import httpx

from assay_client.errors import APIConnectionError, AssayError, error_from_response
from assay_client.retry import GATEWAY_STATUSES, RETRY_STATUSES, RetryPolicy, parse_retry_after

# Failures where the request cannot have reached the application: always safe to send again.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True)
class Call:
    """One API request, before it is sent."""

    method: str
    path: str
    params: dict[str, Any] | None = None
    json: Any = None
    data: dict[str, str] | None = None
    files: dict[str, tuple[str, bytes | Path, str]] | None = None  # a Path is read as it is sent
    headers: dict[str, str] = field(default_factory=dict)
    wait: float = 0.0  # a long-poll: the server may hold the answer this long

    @contextlib.contextmanager
    def opened_files(self) -> Iterator[dict[str, tuple[str, bytes | BinaryIO, str]] | None]:
        """The files as httpx takes them, a Path opened afresh for each try: httpx streams an open file
        in blocks, so a 2 GiB call-record file is never held in memory (it was, three times over)."""
        if not self.files:
            yield self.files  # type: ignore[misc]
            return
        with contextlib.ExitStack() as stack:
            yield {
                name: (filename, stack.enter_context(body.open("rb")) if isinstance(body, Path) else body, kind)
                for name, (filename, body, kind) in self.files.items()
            }

    @property
    def repeatable(self) -> bool:
        """Whether sending it twice is harmless, should the first answer be lost on the way back."""
        return self.method in ("GET", "HEAD", "DELETE") or "Idempotency-Key" in self.headers

    def request_options(self, files: Any, base: httpx.Timeout) -> dict[str, Any]:
        """httpx's keyword arguments for one try (`files` from `opened_files`): one definition for both clients."""
        return {
            "params": self.params,
            "json": self.json,
            "data": self.data,
            "files": files,
            "headers": self.headers,
            "timeout": self.timeout(base),
        }

    def timeout(self, base: httpx.Timeout) -> httpx.Timeout:
        if not self.wait:
            return base
        read = (base.read or 30.0) + self.wait
        return httpx.Timeout(connect=base.connect, read=read, write=base.write, pool=base.pool)


@dataclass(frozen=True)
class RetryEvent:
    """Told to `on_retry` before the client sleeps and tries again."""

    method: str
    path: str
    attempt: int  # tries made so far
    delay: float  # seconds it will now wait
    status: int | None  # the HTTP status refused with, or None for a connection failure
    error: AssayError

    def describe(self) -> str:
        return f"{self.method} {self.path}: {self.error}; retry {self.attempt} in {self.delay:.1f}s"


def job_path(job_id: str, suffix: str = "") -> str:
    return f"/v1/jobs/{quote(job_id, safe='')}{suffix}"


def retry_delay(
    call: Call,
    policy: RetryPolicy,
    *,
    attempts: int,
    elapsed: float,
    response: httpx.Response | None = None,
    exc: httpx.TransportError | None = None,
    rng: random.Random | None = None,
) -> tuple[float, AssayError] | None:
    """(seconds to wait, why) if this outcome deserves another try under `policy`, else None."""
    if exc is not None:
        if not isinstance(exc, _NOT_SENT) and not call.repeatable:
            return None
        error: AssayError = APIConnectionError(f"{type(exc).__name__}: {exc}", code="connection_error")
        delay = policy.delay(attempts - 1, None, rng)
    else:
        assert response is not None
        if response.status_code not in RETRY_STATUSES:
            return None
        if response.status_code in GATEWAY_STATUSES and not call.repeatable:
            return None  # the proxy may have passed it on: a cancel or a redelivery would happen twice
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        error = error_from_response(response.status_code, response.content, response.headers, retry_after)
        delay = policy.delay(attempts - 1, retry_after, rng)
    if delay is None or not policy.allows(attempts, elapsed, delay):
        return None
    return delay, error


def decode(response: httpx.Response) -> Any:
    """The JSON body of a 2xx answer; the API's error as an exception otherwise."""
    if response.is_success:
        return response.json() if response.content else None
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    raise error_from_response(response.status_code, response.content, response.headers, retry_after)


def connection_error(exc: httpx.TransportError, call: Call) -> APIConnectionError:
    return APIConnectionError(
        f"{call.method} {call.path} failed: {type(exc).__name__}: {exc}".rstrip(": "), code="connection_error"
    )


def multipart_upload(
    analysis: str, data: bytes | Path, filename: str, json_fields: Mapping[str, Any | None]
) -> tuple[dict[str, str], dict[str, tuple[str, bytes | Path, str]]]:
    """Form fields and file for POST /v1/jobs as multipart/form-data: raw bytes, no base64. `json_fields`
    (metadata, webhook, options, columns, parameters) go as JSON text; empty ones are left out."""
    fields = {"analysis": analysis}
    fields.update({name: json.dumps(value) for name, value in json_fields.items() if value})
    return fields, {"file": (filename, data, "application/octet-stream")}
