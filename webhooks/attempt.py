"""One delivery attempt: sign, POST, classify. Never raises for anything the receiver does."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from typing import Any

from config import Settings
from webhooks.http import WebhookHttp
from webhooks.policy import AttemptResult, classify, retry_after_seconds
from webhooks.signing import sign

#: The most of an attempt's error that is stored and shown (GET /v1/jobs/{id}/webhooks).
MAX_ERROR_CHARS = 500
_UNPRINTABLE = re.compile(r"[^\x20-\x7e\u00a0-\ud7ff\ue000-\ufffd]")


def _printable(error: str | None) -> str | None:
    """An attempt's error as printable text, bounded: it quotes the receiver (a Location header, an exception's
    text), and a NUL in it made PostgreSQL refuse the statement recording a whole batch of attempts, every
    tenant's, which the recorder then retried for ever."""
    if error is None:
        return None
    return _UNPRINTABLE.sub("\N{REPLACEMENT CHARACTER}", error[:MAX_ERROR_CHARS])


def attempt_delivery(
    settings: Settings,
    http: WebhookHttp,
    *,
    event_id: str,
    url: str,
    payload: dict[str, Any],
    secrets: list[str],
    attempt: int,
) -> AttemptResult:
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True)
    now = datetime.now(UTC)
    headers = {
        "content-type": "application/json",
        "webhook-id": event_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": sign(secrets, event_id, now, body),
    }
    started = time.perf_counter()
    answer = http.post(url, body.encode(), headers)
    latency_ms = int((time.perf_counter() - started) * 1000)
    error, retry_after = answer.error, None
    if answer.status is not None and error is None:
        if 300 <= answer.status < 400:
            error = f"HTTP {answer.status}: redirects are not followed (Location: {answer.headers.get('location')})"
        elif not 200 <= answer.status < 300:
            error = f"HTTP {answer.status}"
            retry_after = retry_after_seconds(answer.headers.get("retry-after"), time.time())
    error = _printable(error)
    # An incomplete answer counts as a failure whatever its status (the status is still logged).
    counted = answer.status if error is None or not 200 <= (answer.status or 0) < 300 else None
    outcome, next_in = classify(settings, attempt, counted, retry_after)
    return AttemptResult(outcome, answer.status, latency_ms, error, next_in)
