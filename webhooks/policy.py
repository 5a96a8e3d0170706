"""What an attempt's answer means: delivered, stopped, or tried again later, and when."""

from __future__ import annotations

import email.utils
import random
import re
from dataclasses import dataclass

from config import Settings


@dataclass(frozen=True)
class AttemptResult:
    outcome: str  # delivered | pending (retry later) | failed | stopped
    status_code: int | None
    latency_ms: int
    error: str | None
    next_attempt_in: float | None


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """Seconds asked for by a `Retry-After` header: delay-seconds (ASCII digits) or an HTTP date.
    Anything else (`²`, `-1`, `soon`, a date that does not parse) is ignored: the schedule applies."""
    if not value:
        return None
    value = value.strip()
    if re.fullmatch(r"[0-9]{1,10}", value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def classify(
    settings: Settings, attempt: int, status_code: int | None, retry_after: float | None
) -> tuple[str, float | None]:
    """2xx delivered; 410 stop; anything else a failure, retried on schedule (Retry-After honoured, capped)."""
    if status_code is not None and 200 <= status_code < 300:
        return "delivered", None
    if status_code == 410:
        return "stopped", None
    schedule = settings.webhook_schedule_seconds
    if attempt > len(schedule):
        return "failed", None
    delay = schedule[attempt - 1] * (1 + random.uniform(-settings.webhook_jitter, settings.webhook_jitter))
    if status_code in (429, 503) and retry_after is not None:
        delay = max(delay, min(retry_after, settings.webhook_max_retry_after_seconds))
    return "pending", delay
