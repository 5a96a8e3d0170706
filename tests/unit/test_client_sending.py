"""The client's send loop on an in-memory transport: what it sends on retries, how long it sleeps, what it raises.

(The integration tests run the same code against the real API; here the answers are scripted so that
the rare cases — 429 with a date, a lost answer, a policy running out — are certain to happen.)
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from assay_client import APIConnectionError, AsyncClient, Client, QueueFull, RateLimited, RetryPolicy

JOB = {
    "id": "job_1",
    "object": "job",
    "analysis": "sentiment",
    "status": "queued",
    "created_at": "2026-11-23T12:00:00Z",
    "started_at": None,
    "completed_at": None,
    "result": None,
    "error": None,
    "metadata": {},
    "attempts": 0,
    "erased_at": None,
}
FULL = {"error": {"code": "queue_full", "message": "full", "details": None}}


def scripted(
    answers: list[Callable[[httpx.Request], httpx.Response]], seen: list[httpx.Request]
) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers[min(len(seen), len(answers)) - 1](request)

    return httpx.MockTransport(handle)


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr("assay_client.client.time.sleep", slept.append)
    return slept


def test_a_503_then_a_429_then_success_resends_the_same_idempotency_key(sleeps: list[float]) -> None:
    seen: list[httpx.Request] = []
    date = format_datetime(datetime.now(UTC) + timedelta(seconds=4), usegmt=True)
    answers = [
        lambda r: httpx.Response(503, json=FULL, headers={"Retry-After": "5"}),
        lambda r: httpx.Response(
            429, json={"error": {"code": "rate_limited", "message": "slow"}}, headers={"Retry-After": date}
        ),
        lambda r: httpx.Response(202, json=JOB),
    ]
    events = []
    client = Client("http://assay.test", "k", transport=scripted(answers, seen), on_retry=events.append)
    job = client.submit("sentiment", "hello")
    assert job.id == "job_1" and len(seen) == 3
    keys = {r.headers["Idempotency-Key"] for r in seen}
    assert len(keys) == 1 and next(iter(keys)).startswith("ar1-")  # generated once, reused on every retry
    assert 5 <= sleeps[0] <= 5.5 and 2 <= sleeps[1] <= 4.5
    assert [(e.status, e.error.code) for e in events] == [(503, "queue_full"), (429, "rate_limited")]
    assert json.loads(seen[0].content) == {"analysis": "sentiment", "input": {"text": "hello"}}
    assert seen[0].headers["Authorization"] == "Bearer k"


def test_when_the_policy_is_spent_the_api_error_is_raised(sleeps: list[float]) -> None:
    seen: list[httpx.Request] = []
    answers = [lambda r: httpx.Response(503, json=FULL, headers={"Retry-After": "1"})]
    client = Client("http://assay.test", "k", transport=scripted(answers, seen), retry=RetryPolicy(max_attempts=3))
    with pytest.raises(QueueFull) as caught:
        client.submit("sentiment", "hello")
    assert len(seen) == 3 and len(sleeps) == 2 and caught.value.retry_after == 1


def test_a_lost_answer_to_a_cancel_is_not_repeated(sleeps: list[float]) -> None:
    def lost(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadError("connection reset", request=request)

    seen: list[httpx.Request] = []
    client = Client("http://assay.test", "k", transport=scripted([lost], seen))
    with pytest.raises(APIConnectionError):
        client.cancel("job_1")
    assert len(seen) == 1 and sleeps == []
    with pytest.raises(APIConnectionError):
        client.get("job_1")  # a GET is retried, within the policy, then gives up
    assert len(seen) == 1 + 8 and len(sleeps) == 7


def test_rate_limited_without_retry_after_backs_off_exponentially(sleeps: list[float]) -> None:
    seen: list[httpx.Request] = []
    answers = [lambda r: httpx.Response(429, json={"error": {"code": "rate_limited", "message": "x"}})]
    policy = RetryPolicy(max_attempts=5, base_delay=1, max_delay=100, max_elapsed=None)
    client = Client("http://assay.test", "k", transport=scripted(answers, seen), retry=policy)
    with pytest.raises(RateLimited):
        client.analyses()
    assert len(sleeps) == 4 and all(2 ** (i - 1) <= s <= 2**i for i, s in enumerate(sleeps))


def test_wait_long_polls_with_the_wait_parameter(sleeps: list[float]) -> None:
    seen: list[httpx.Request] = []
    answers = [
        lambda r: httpx.Response(200, json={**JOB, "status": "running"}),
        lambda r: httpx.Response(200, json={**JOB, "status": "succeeded", "result": {"label": "positive"}}),
    ]
    client = Client("http://assay.test", "k", transport=scripted(answers, seen), long_poll=25)
    job = client.wait("job_1")
    assert job.status == "succeeded" and job.result == {"label": "positive"}
    assert [r.url.params["wait"] for r in seen] == ["25", "25"]


def test_the_async_client_has_every_method_of_the_sync_one() -> None:
    # The README: "AsyncClient has the same methods to await". `watcher` is the sync client's thread pool
    # (async code has iter_results), `close` is `aclose`.
    public = {name for name in dir(Client) if not name.startswith("_")} - {"watcher", "close"}
    assert public - set(dir(AsyncClient)) == set()


def test_the_async_client_uploads_a_file_and_says_whether_it_was_created(tmp_path) -> None:
    seen: list[httpx.Request] = []

    async def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(202 if len(seen) == 1 else 200, json={**JOB, "analysis": "cdr_fraud"})

    calls = tmp_path / "calls.csv"
    calls.write_bytes(b"caller,callee,start,duration\n")

    async def run() -> list[tuple[str, bool]]:
        async with AsyncClient("http://assay.test", "k", transport=httpx.MockTransport(handle)) as assay:
            first = await assay.submit_file("cdr_fraud", calls, idempotency_key="f1", columns={"caller": "a"})
            again = await assay.submit_file("cdr_fraud", calls, idempotency_key="f1", columns={"caller": "a"})
        return [(first[0].id, first[1]), (again[0].id, again[1])]

    assert asyncio.run(run()) == [("job_1", True), ("job_1", False)]
    assert [r.headers["Idempotency-Key"] for r in seen] == ["f1", "f1"]
    assert seen[0].headers["Content-Type"].startswith("multipart/form-data")
    assert b'name="columns"' in seen[0].content and b"caller,callee" in seen[0].content


def test_async_wait_many_gives_an_erased_job_as_its_bare_record() -> None:
    bare = {**JOB, "id": "job_2", "status": "canceled", "erased_at": "2026-11-23T12:00:02Z"}

    async def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("job_2"):
            gone = {"error": {"code": "job_erased", "message": "erased", "details": {"job": bare}}}
            return httpx.Response(410, json=gone)
        return httpx.Response(200, json={**JOB, "status": "succeeded"})

    async def run() -> list[tuple[str, str, bool]]:
        async with AsyncClient("http://assay.test", "k", transport=httpx.MockTransport(handle)) as assay:
            jobs = await assay.wait_many(["job_2", "job_1"])
        return [(j.id, j.status, j.erased_at is not None) for j in jobs]

    assert asyncio.run(run()) == [("job_2", "canceled", True), ("job_1", "succeeded", False)]


def test_a_server_that_allows_no_long_poll_is_not_polled_in_a_busy_loop(sleeps: list[float]) -> None:
    # ASSAY_MAX_WAIT_SECONDS=0 (long-polls off): a limit of 0 must not turn wait() into back-to-back GETs
    # that the server answers at once; the refusal stands, as it did before clients kept to the limit.
    from assay_client import BadRequest

    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if "wait" in request.url.params:
            refusal = {"code": "invalid_wait", "message": "wait must be from 0 to 0", "details": {"limit": 0}}
            return httpx.Response(400, json={"error": refusal})
        return httpx.Response(200, json={**JOB, "status": "running" if len(seen) < 200 else "succeeded"})

    client = Client("http://assay.test", "k", transport=httpx.MockTransport(handle), long_poll=30)
    with pytest.raises(BadRequest):
        client.wait("job_1")
    assert len(seen) == 1
