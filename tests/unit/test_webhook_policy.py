"""Webhook policy in isolation: Retry-After parsing, the retry schedule, and receivers' fair shares."""

from __future__ import annotations

import email.utils
import time

import pytest

from config.settings import load_settings
from webhooks.fairness import BUSY_DEFER_SECONDS, ReceiverGate, receiver_of
from webhooks.policy import classify, retry_after_seconds

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("²", None),  # str.isdigit() says yes; float() says no
        ("٣", None),  # Arabic-Indic three
        ("-1", None),
        ("1.5", None),
        ("soon", None),
        ("", None),
        (None, None),
        ("99999999999", None),  # longer than any sane delay
        (email.utils.formatdate(NOW + 30, usegmt=True), 30.0),
        (email.utils.formatdate(NOW - 30, usegmt=True), 0.0),  # in the past: now
        ("Mon, 32 Foo 2026 25:61:61 GMT", None),
        ("Sun, 06 Nov 1994 08:49:37", None),  # no zone: ambiguous, ignored
    ],
)
def test_retry_after_is_seconds_or_an_http_date(value: str | None, expected: float | None) -> None:
    got = retry_after_seconds(value, NOW)
    assert (got is None and expected is None) or (got is not None and abs(got - expected) < 1)


def test_classify_follows_the_schedule_and_caps_retry_after() -> None:
    settings = load_settings(webhook_schedule_seconds=[5, 60], webhook_jitter=0, webhook_max_retry_after_seconds=100)
    assert classify(settings, 1, 204, None) == ("delivered", None)
    assert classify(settings, 1, 410, None) == ("stopped", None)
    assert classify(settings, 1, 500, None) == ("pending", 5)
    assert classify(settings, 2, None, None) == ("pending", 60)
    assert classify(settings, 3, 500, None) == ("failed", None)
    assert classify(settings, 1, 503, 3600) == ("pending", 100), "Retry-After is honoured, up to the cap"
    assert classify(settings, 1, 500, 3600) == ("pending", 5), "only 429 and 503 may ask for a later retry"


def test_a_receiver_at_its_share_defers_and_a_failing_one_pauses() -> None:
    gate = ReceiverGate(limit=2, failures=3, open_seconds=0.5, wait_seconds=0.05)
    slow, fast = receiver_of("http://slow.example:8080/a"), receiver_of("https://fast.example/b")
    assert gate.enter(slow) is None and gate.enter(slow) is None
    started = time.monotonic()
    assert gate.enter(slow) == BUSY_DEFER_SECONDS, "a third attempt in flight to one receiver is deferred..."
    assert time.monotonic() - started >= 0.05, "...after waiting a moment for a slot"
    assert gate.enter(fast) is None, "another receiver is not held back"
    gate.leave(fast, ok=True)
    gate.leave(slow, ok=False)  # the two in flight fail...
    gate.leave(slow, ok=False)
    assert gate.enter(slow) is None  # ...and a third attempt too: three in a row
    gate.leave(slow, ok=False)
    assert slow in gate.paused() and 0 < (gate.enter(slow) or 0) <= 0.5
    time.sleep(0.55)
    assert gate.enter(slow) is None, "after the pause one attempt decides"
    gate.leave(slow, ok=False)
    assert slow in gate.paused(), "half-open: one more failure pauses it again"
