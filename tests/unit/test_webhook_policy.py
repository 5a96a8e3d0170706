"""Webhook policy in isolation: Retry-After parsing, the retry schedule, and receivers' fair shares."""

from __future__ import annotations

import email.utils
import time

import pytest

from config.settings import load_settings
from webhooks.fairness import BUSY_DEFER_SECONDS, Offer, ReceiverLanes, receiver_of
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


def test_a_receiver_at_its_share_queues_a_paced_line_and_a_failing_one_pauses() -> None:
    lanes: ReceiverLanes[str] = ReceiverLanes(limit=2, failures=3, open_seconds=0.5, line_seconds=0.5)
    slow, fast = receiver_of("http://slow.example:8080/a"), receiver_of("https://fast.example/b")
    assert lanes.offer(slow, "a").action == "run" and lanes.offer(slow, "b").action == "run"
    assert lanes.offer(slow, "c").action == "queued", "a receiver with no known pace gets a line"
    assert lanes.offer(fast, "x").action == "run", "another receiver is not held back"
    lanes.done(slow, ok=True, seconds=2.0)  # now known to take 2 s an attempt, 2 at a time
    assert lanes.next(slow) == "c"
    assert lanes.offer(slow, "d") == Offer("defer", BUSY_DEFER_SECONDS), "its line would wait 1 s > 0.5 s"
    lanes.done(fast, ok=True, seconds=0.001)
    assert lanes.next(fast) is None  # the runner ends; the lane is free again
    assert [lanes.offer(fast, str(i)).action for i in range(4)] == ["run", "run", "queued", "queued"]
    lanes.done(slow, ok=False, seconds=2.0)  # three failures in a row...
    lanes.done(slow, ok=False, seconds=2.0)
    lanes.done(slow, ok=False, seconds=2.0)
    assert slow in lanes.paused() and 0 < lanes.paused_for(slow) <= 0.5
    offer = lanes.offer(slow, "e")
    assert offer.action == "defer" and 0 < offer.seconds <= 0.5, "paused: its events wait, untried"
    time.sleep(0.55)
    assert lanes.paused_for(slow) == 0, "after the pause one attempt decides"
    lanes.done(slow, ok=False, seconds=2.0)
    assert slow in lanes.paused(), "half-open: one more failure pauses it again"
