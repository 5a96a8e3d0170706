"""When to try a request again, and how long to wait first.

429 and 503 mean "not now": the API refused before doing anything, so any request may be sent
again. A connection that failed before the request was sent is safe to retry too; one that broke
after sending is retried only when repeating it cannot duplicate work (GET/DELETE, or a POST with
an Idempotency-Key, which the client always sends when it creates jobs). 502 and 504 come from a
proxy in front of the API, which may have passed the request on before it gave up: like a broken
connection, they are retried only for a request that is harmless to repeat.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

RETRY_STATUSES = frozenset({429, 502, 503, 504})
#: A gateway's answers: the API behind it may have done the work, so only a repeatable request is sent again.
GATEWAY_STATUSES = frozenset({502, 504})


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date; None if absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, bounded by attempts and by total time (whichever comes first).

    A Retry-After from the server is honoured as the minimum wait (plus up to 10 % jitter so a crowd
    of clients told "5" does not come back in the same millisecond); a server asking for more than
    `max_retry_after` seconds is taken at its word that it is not coming back soon, and the error is raised.
    """

    max_attempts: int | None = 8  # tries in all, the first included; None: bounded by max_elapsed only
    max_elapsed: float | None = 120.0  # seconds from the first try after which no retry starts
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 300.0

    def backoff(self, retry: int, rng: random.Random | None = None) -> float:
        """Wait before retry number `retry` (0 for the first): half fixed, half random ("equal jitter")."""
        ceiling = min(self.max_delay, self.base_delay * 2**retry)
        return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)

    def delay(self, retry: int, retry_after: float | None, rng: random.Random | None = None) -> float | None:
        """Seconds to sleep before retry number `retry`, or None when the server's request is beyond bounds."""
        if retry_after is None:
            return self.backoff(retry, rng)
        if retry_after > self.max_retry_after:
            return None
        return retry_after + (rng or random).uniform(0, max(0.05, retry_after * 0.1))

    def allows(self, attempts_made: int, elapsed: float, next_delay: float) -> bool:
        """True if one more try fits: `attempts_made` tries so far, `elapsed` seconds since the first."""
        if self.max_attempts is not None and attempts_made >= self.max_attempts:
            return False
        return self.max_elapsed is None or elapsed + next_delay <= self.max_elapsed


NO_RETRY = RetryPolicy(max_attempts=1)
