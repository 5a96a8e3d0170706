"""Retry-After parsing, backoff bounds, and which failures the client may retry."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from assay_client._http import Call, retry_delay
from assay_client.errors import APIConnectionError, QueueFull, RateLimited
from assay_client.retry import RetryPolicy, parse_retry_after
from hypothesis import given
from hypothesis import strategies as st

NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("5", 5.0), (" 12 ", 12.0), ("0.25", 0.25), ("0", 0.0), ("-3", 0.0), (None, None), ("", None), ("soon", None)],
)
def test_retry_after_in_seconds(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, NOW) == seconds


@pytest.mark.parametrize("header", ["nan", "inf", "-inf"])
def test_retry_after_that_is_not_a_finite_number_is_ignored(header: str) -> None:
    assert parse_retry_after(header, NOW) is None


def test_retry_after_as_an_http_date() -> None:
    assert parse_retry_after(format_datetime(NOW + timedelta(seconds=90), usegmt=True), NOW) == 90.0
    assert parse_retry_after("Mon, 23 Nov 2026 12:00:30 GMT", NOW) == 30.0
    assert parse_retry_after(format_datetime(NOW - timedelta(hours=1), usegmt=True), NOW) == 0.0  # already past
    assert parse_retry_after("Mon, 99 Foo 2026 99:00:00 GMT", NOW) is None


@given(retry=st.integers(0, 60), seed=st.integers(0, 2**32))
def test_backoff_grows_exponentially_with_jitter_and_is_capped(retry: int, seed: int) -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=30)
    ceiling = min(30, 0.5 * 2**retry)
    delay = policy.backoff(retry, random.Random(seed))
    assert ceiling / 2 <= delay <= ceiling


def test_backoff_is_jittered() -> None:
    rng = random.Random(7)
    assert len({round(RetryPolicy().backoff(5, rng), 6) for _ in range(20)}) > 15


def test_retry_after_is_the_minimum_wait_plus_a_little_jitter() -> None:
    policy = RetryPolicy(max_retry_after=60)
    delays = [policy.delay(0, 5.0, random.Random(seed)) for seed in range(50)]
    assert all(d is not None and 5.0 <= d <= 5.5 for d in delays)
    assert policy.delay(0, 0.0, random.Random(1)) is not None
    assert policy.delay(0, 61.0) is None  # the server is not coming back soon: give up, say why


def test_the_policy_bounds_attempts_and_total_time() -> None:
    policy = RetryPolicy(max_attempts=3, max_elapsed=10)
    assert policy.allows(1, 0, 1) and policy.allows(2, 8, 2)
    assert not policy.allows(3, 0, 1)  # three tries made
    assert not policy.allows(2, 9, 2)  # the wait would pass max_elapsed
    unbounded_count = RetryPolicy(max_attempts=None, max_elapsed=600)
    assert unbounded_count.allows(500, 100, 5) and not unbounded_count.allows(500, 599, 5)


def _response(status: int, body: bytes = b"", **headers: str) -> httpx.Response:
    return httpx.Response(status, content=body, headers=headers)


QUEUE_FULL = b'{"error": {"code": "queue_full", "message": "queue assay.text holds 9 messages", "details": null}}'
POLICY = RetryPolicy(max_attempts=5, max_elapsed=100)
GET = Call("GET", "/v1/jobs/job_1")
KEYED_POST = Call("POST", "/v1/jobs", headers={"Idempotency-Key": "k"})
BARE_POST = Call("POST", "/v1/jobs/job_1/cancel")


def test_503_with_retry_after_is_retried_after_that_long() -> None:
    decision = retry_delay(
        KEYED_POST, POLICY, attempts=1, elapsed=0, response=_response(503, QUEUE_FULL, **{"Retry-After": "5"})
    )
    assert decision is not None
    delay, error = decision
    assert 5 <= delay <= 5.5
    assert isinstance(error, QueueFull) and error.code == "queue_full" and error.retry_after == 5


def test_429_with_an_http_date_is_retried() -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=3), usegmt=True)
    decision = retry_delay(GET, POLICY, attempts=1, elapsed=0, response=_response(429, b"", **{"Retry-After": when}))
    assert decision is not None
    assert 1.5 <= decision[0] <= 3.5 and isinstance(decision[1], RateLimited)


@pytest.mark.parametrize("status", [200, 202, 400, 401, 404, 409, 413, 422, 500])
def test_other_answers_are_not_retried(status: int) -> None:
    assert retry_delay(GET, POLICY, attempts=1, elapsed=0, response=_response(status)) is None


def test_no_retry_once_the_policy_is_spent() -> None:
    assert retry_delay(GET, POLICY, attempts=5, elapsed=0, response=_response(503)) is None
    assert retry_delay(GET, POLICY, attempts=1, elapsed=99, response=_response(503, **{"Retry-After": "5"})) is None


def test_a_connection_that_never_opened_is_always_retried() -> None:
    refused = httpx.ConnectError("connection refused")
    for call in (GET, KEYED_POST, BARE_POST):
        decision = retry_delay(call, POLICY, attempts=1, elapsed=0, exc=refused)
        assert decision is not None and isinstance(decision[1], APIConnectionError)


def test_a_broken_answer_is_retried_only_when_repeating_is_harmless() -> None:
    lost = httpx.ReadTimeout("timed out")
    assert retry_delay(GET, POLICY, attempts=1, elapsed=0, exc=lost) is not None
    assert retry_delay(Call("DELETE", "/v1/jobs/job_1"), POLICY, attempts=1, elapsed=0, exc=lost) is not None
    assert retry_delay(KEYED_POST, POLICY, attempts=1, elapsed=0, exc=lost) is not None  # the key makes it a replay
    assert retry_delay(BARE_POST, POLICY, attempts=1, elapsed=0, exc=lost) is None  # might have happened already


@pytest.mark.parametrize("status", [502, 504])
def test_a_gateway_error_is_retried_only_when_repeating_is_harmless(status: int) -> None:
    # The proxy may have handed the request to the API before it gave up: a cancel or a webhook redelivery
    # sent again would be done twice (a second cancel answers 409 job_not_cancelable for a cancel that worked).
    assert retry_delay(GET, POLICY, attempts=1, elapsed=0, response=_response(status)) is not None
    assert retry_delay(KEYED_POST, POLICY, attempts=1, elapsed=0, response=_response(status)) is not None
    assert retry_delay(BARE_POST, POLICY, attempts=1, elapsed=0, response=_response(status)) is None
    assert retry_delay(BARE_POST, POLICY, attempts=1, elapsed=0, response=_response(503, QUEUE_FULL)) is not None
