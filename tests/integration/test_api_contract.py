"""The HTTP contract against a real gunicorn + PostgreSQL + Redis, with no worker consuming.

Jobs submitted here stay `queued` (their queue has no consumer), which makes cancel and
listing deterministic.
"""

from __future__ import annotations

import json
import re
import secrets

import pytest
from sqlalchemy import Engine, func, select

from store.tables import jobs
from tests.support import Client, Stack


@pytest.fixture(scope="module")
def idle_api(stack: Stack) -> str:
    """An API whose queues no worker consumes."""
    return stack.api(ASSAY_QUEUE_PREFIX=f"idle{secrets.token_hex(3)}")[1]


@pytest.fixture
def idle(idle_api: str, new_key) -> Client:
    return Client(idle_api, new_key())


def job_count(db: Engine) -> int:
    with db.connect() as conn:
        return conn.execute(select(func.count()).select_from(jobs)).scalar_one()


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


def test_submit_returns_202_with_job_and_location(idle: Client) -> None:
    response = idle.post("/v1/jobs", json={"analysis": "sentiment", "input": {"text": "hi"}, "metadata": {"ref": 7}})
    assert response.status_code == 202
    job = response.json()
    assert response.headers["Location"] == f"/v1/jobs/{job['id']}"
    assert job["id"].startswith("job_")
    assert job["status"] == "queued"
    assert job["metadata"] == {"ref": 7}
    assert job["attempts"] == 0
    for key in ("analysis", "created_at", "started_at", "completed_at", "result", "error"):
        assert key in job
    assert idle.get(f"/v1/jobs/{job['id']}").json()["id"] == job["id"]


def test_idempotency_key_replays_or_conflicts(idle: Client) -> None:
    body = {"analysis": "sentiment", "input": {"text": "same"}}
    first = idle.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k-1"})
    again = idle.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == 202 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    other = idle.post("/v1/jobs", json={**body, "input": {"text": "different"}}, headers={"Idempotency-Key": "k-1"})
    assert_error(other, 409, "idempotency_key_reused")
    listed = idle.get("/v1/jobs").json()["data"]
    assert [j["id"] for j in listed] == [first.json()["id"]]


def test_batch_idempotency(idle: Client) -> None:
    body = {"jobs": [{"analysis": "sentiment", "input": {"text": f"t{i}"}} for i in range(3)]}
    first = idle.post("/v1/jobs/batch", json=body, headers={"Idempotency-Key": "b-1"})
    again = idle.post("/v1/jobs/batch", json=body, headers={"Idempotency-Key": "b-1"})
    assert first.status_code == 202 and again.status_code == 200
    assert [j["id"] for j in again.json()["data"]] == [j["id"] for j in first.json()["data"]]
    body["jobs"][1]["input"]["text"] = "changed"
    assert_error(
        idle.post("/v1/jobs/batch", json=body, headers={"Idempotency-Key": "b-1"}), 409, "idempotency_key_reused"
    )


def test_a_batch_replay_shorter_than_the_original_is_another_body(idle: Client) -> None:
    """Its entries matched the first ones of the original, so it was answered 200 with only those jobs."""
    jobs = [{"analysis": "sentiment", "input": {"text": f"short replay {i}"}} for i in range(2)]
    first = idle.post("/v1/jobs/batch", json={"jobs": jobs}, headers={"Idempotency-Key": "b-short"})
    assert first.status_code == 202, first.text
    shorter = idle.post("/v1/jobs/batch", json={"jobs": jobs[:1]}, headers={"Idempotency-Key": "b-short"})
    assert_error(shorter, 409, "idempotency_key_reused")
    again = idle.post("/v1/jobs/batch", json={"jobs": jobs}, headers={"Idempotency-Key": "b-short"})
    assert again.status_code == 200 and [j["id"] for j in again.json()["data"]] == [
        j["id"] for j in first.json()["data"]
    ]


def test_an_erased_jobs_key_confirms_no_body(idle: Client, db: Engine) -> None:
    """An erased job kept the hash of its request body (input included): a guessed input could be confirmed
    by hashing it, or by replaying it with the key (200 for the right text, 409 for a wrong one)."""
    body = {"analysis": "sentiment", "input": {"text": "erase my request too"}}
    job = idle.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k-erased"}).json()
    assert idle.delete(f"/v1/jobs/{job['id']}").status_code == 200
    with db.connect() as conn:
        assert conn.execute(select(jobs.c.request_hash).where(jobs.c.id == job["id"])).scalar_one() is None
    for text in ("erase my request too", "a wrong guess"):
        replay = idle.post("/v1/jobs", json={**body, "input": {"text": text}}, headers={"Idempotency-Key": "k-erased"})
        assert replay.status_code == 200 and replay.json()["id"] == job["id"], replay.text
        assert replay.json()["erased_at"] is not None


def test_batch_keeps_order(idle: Client) -> None:
    texts = [f"text number {i}" for i in range(25)]
    created = idle.submit_batch(texts)
    assert len(created) == 25
    assert len({j["id"] for j in created}) == 25


def test_list_newest_first_with_cursor_pagination(idle: Client) -> None:
    ids = [idle.submit(f"job {i}")["id"] for i in range(7)]
    seen, cursor = [], None
    while True:
        page = idle.get("/v1/jobs", params={"limit": 3, **({"cursor": cursor} if cursor else {})}).json()
        seen += [j["id"] for j in page["data"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == list(reversed(ids))
    assert idle.get("/v1/jobs", params={"status": "succeeded"}).json()["data"] == []
    assert len(idle.get("/v1/jobs", params={"status": "queued", "analysis": "sentiment"}).json()["data"]) == 7


def test_cancel_queued_is_immediate_then_not_cancelable(idle: Client) -> None:
    job = idle.submit("cancel me")
    response = idle.post(f"/v1/jobs/{job['id']}/cancel")
    assert response.status_code == 200
    assert response.json()["cancellation"] == "immediate"
    assert response.json()["job"]["status"] == "canceled"
    assert idle.get(f"/v1/jobs/{job['id']}").json()["status"] == "canceled"
    assert_error(idle.post(f"/v1/jobs/{job['id']}/cancel"), 409, "job_not_cancelable")


def test_delete_erases_input_result_and_metadata(idle: Client, db: Engine) -> None:
    job = idle.submit("my secret text", metadata={"email": "a@example.com"})
    response = idle.delete(f"/v1/jobs/{job['id']}")
    assert response.status_code == 200
    assert response.json()["erased_at"] is not None
    gone = idle.get(f"/v1/jobs/{job['id']}")  # 410 Gone: what remains is in the error's details
    erased = assert_error(gone, 410, "job_erased")["details"]["job"]
    assert erased["erased_at"] is not None
    assert erased["metadata"] == {} and erased["result"] is None
    assert erased["status"] == "canceled"  # it was still queued: it will never run
    assert idle.delete(f"/v1/jobs/{job['id']}").status_code == 200, "erasing twice is harmless"
    listed = next(j for j in idle.get("/v1/jobs").json()["data"] if j["id"] == job["id"])
    assert listed["erased_at"] is not None, "the bare record stays listed for accounting"
    with db.connect() as conn:
        stored = conn.execute(select(jobs.c.input, jobs.c.metadata).where(jobs.c.id == job["id"])).one()
    assert stored.input is None and stored.metadata == {}


def test_tenants_are_isolated(idle: Client, idle_api: str, new_key) -> None:
    job = idle.submit("mine")
    other = Client(idle_api, new_key())
    assert_error(other.get(f"/v1/jobs/{job['id']}"), 404, "job_not_found")
    assert_error(other.post(f"/v1/jobs/{job['id']}/cancel"), 404, "job_not_found")
    assert_error(other.delete(f"/v1/jobs/{job['id']}"), 404, "job_not_found")
    assert other.get("/v1/jobs").json()["data"] == []
    assert idle.get(f"/v1/jobs/{job['id']}").json()["status"] == "queued"


def test_wait_returns_after_timeout_for_a_job_that_stays_queued(idle: Client) -> None:
    job = idle.submit("nobody will run me")
    response = idle.get(f"/v1/jobs/{job['id']}", params={"wait": 1})
    assert response.status_code == 200 and response.json()["status"] == "queued"


def test_meta_endpoints(idle: Client, idle_api: str) -> None:
    anonymous = Client(idle_api, None)
    assert anonymous.get("/health").json() == {"status": "ok"}
    assert anonymous.get("/ready").json()["status"] == "ready"
    spec = anonymous.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    assert {"/v1/jobs", "/v1/jobs/batch", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/cancel"} <= set(spec["paths"])
    assert "Job" in spec["components"]["schemas"]
    analyses = idle.get("/v1/analyses").json()["data"]
    sentiment = next(a for a in analyses if a["name"] == "sentiment")
    assert sentiment["input"] == "text" and set(sentiment["labels"]) == {"positive", "negative", "neutral"}
    assert sentiment["limits"]["max_text_chars"] > 0


def test_every_v1_route_is_in_the_openapi_document(idle_api: str) -> None:
    """/v1/events and /v1/stats were served and missing from it: a client generated from it lacked them."""
    from app.factory import create_app

    served = {
        (re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule), method.lower())
        for rule in create_app().url_map.iter_rules()
        if rule.rule.startswith("/v1/")
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}
    }
    spec = Client(idle_api, None).get("/openapi.json").json()
    documented = {(path, method) for path, operations in spec["paths"].items() for method in operations}
    assert served - documented == set()


def test_an_unknown_query_parameter_answers_a_status_the_openapi_document_lists(idle: Client, idle_api: str) -> None:
    """Cancel, delete, a job's webhooks, redeliver, the secret and stats refuse `?x=1` with 400
    `invalid_parameter`, which their operations did not list: a client generated from the document had
    no case for it."""
    spec = Client(idle_api, None).get("/openapi.json").json()
    job = idle.submit("query parameters")["id"]
    calls = [
        ("get", "/v1/jobs", "/v1/jobs"),
        ("get", "/v1/jobs/{job_id}", f"/v1/jobs/{job}"),
        ("get", "/v1/jobs/{job_id}/webhooks", f"/v1/jobs/{job}/webhooks"),
        ("post", "/v1/jobs/{job_id}/cancel", f"/v1/jobs/{job}/cancel"),
        ("delete", "/v1/jobs/{job_id}", f"/v1/jobs/{job}"),
        ("post", "/v1/webhooks/{event_id}/redeliver", "/v1/webhooks/msg_01k998lcs40r2d17bhdgkq6b/redeliver"),
        ("get", "/v1/webhooks/secret", "/v1/webhooks/secret"),
        ("post", "/v1/webhooks/secret/rotate", "/v1/webhooks/secret/rotate"),
        ("get", "/v1/stats", "/v1/stats"),
        ("get", "/v1/events", "/v1/events"),
        ("get", "/v1/analyses", "/v1/analyses"),
    ]
    for method, operation, path in calls:
        response = idle.request(method.upper(), path, params={"x": "1"})
        assert_error(response, 400, "invalid_parameter")
        documented = spec["paths"][operation][method]["responses"]
        assert "400" in documented, (method, operation, sorted(documented))


def test_ready_names_the_failed_dependency(stack: Stack) -> None:
    _, url = stack.api(REDIS_URL="redis://127.0.0.1:1/0")
    error = assert_error(Client(url, None).get("/ready"), 503, "not_ready")
    assert "redis" in error["message"] and "postgresql" not in error["message"]


def test_unknown_analysis_is_one_answer_wherever_it_is_named(idle: Client) -> None:
    """A JSON job, a multipart upload, a raw upload and a list filter: the same code, message and details."""
    served = sorted(a["name"] for a in idle.get("/v1/analyses").json()["data"])
    answers = [
        idle.post("/v1/jobs", json={"analysis": "horoscope", "input": {"text": "hi"}}),
        idle.post("/v1/jobs", data={"analysis": "horoscope"}, files={"file": ("a.wav", b"RIFF")}),
        idle.post("/v1/jobs", params={"analysis": "horoscope"}, data=b"RIFF", headers={"Content-Type": "audio/wav"}),
        idle.get("/v1/jobs", params={"analysis": "horoscope"}),
    ]
    for response in answers:
        error = assert_error(response, 422, "unknown_analysis")
        assert error["details"] == {"available": served}, error
        assert error["message"] == "analysis 'horoscope' is not served here; GET /v1/analyses lists the analyses"


LONG = "x" * 20_001


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"json": {"input": {"text": "hi"}}}, 422, "validation_error"),
        ({"json": {"analysis": "horoscope", "input": {"text": "hi"}}}, 422, "unknown_analysis"),
        ({"json": {"analysis": 5, "input": {"text": "hi"}}}, 422, "unknown_analysis"),
        ({"json": {"analysis": "sentiment"}}, 422, "validation_error"),
        ({"json": {"analysis": "sentiment", "input": {"text": ""}}}, 422, "empty_text"),
        ({"json": {"analysis": "sentiment", "input": {"text": "  \n "}}}, 422, "empty_text"),
        ({"json": {"analysis": "sentiment", "input": {"text": 12}}}, 422, "validation_error"),
        ({"json": {"analysis": "sentiment", "input": {"text": LONG}}}, 413, "input_too_large"),
        ({"json": {"analysis": "sentiment", "input": {"text": "hi"}, "extra": 1}}, 422, "validation_error"),
        ({"json": {"analysis": "sentiment", "input": {"text": "hi"}, "metadata": "x"}}, 422, "validation_error"),
        ({"json": {"analysis": "sentiment", "input": {"text": "hi"}, "metadata": {"k": "v" * 20_000}}}, 413,
         "metadata_too_large"),
        ({"json": ["not", "an", "object"]}, 422, "validation_error"),
        ({"data": "analysis=sentiment", "headers": {"Content-Type": "text/plain"}}, 415, "unsupported_media_type"),
        ({"data": "{not json", "headers": {"Content-Type": "application/json"}}, 400, "invalid_json"),
        ({"data": "", "headers": {"Content-Type": "application/json"}}, 400, "invalid_json"),
        ({"json": {"analysis": "sentiment", "input": {"text": "hi"}}, "headers": {"Idempotency-Key": "k" * 300}}, 400,
         "invalid_idempotency_key"),
    ],
)  # fmt: skip
def test_bad_submissions_are_4xx_and_create_nothing(idle: Client, db: Engine, kwargs, status, code) -> None:
    before = job_count(db)
    assert_error(idle.post("/v1/jobs", **kwargs), status, code)
    assert job_count(db) == before


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"jobs": [{"analysis": "sentiment", "input": {"text": "ok"}}] * 1001}, 413, "batch_too_large"),
        ({"jobs": []}, 422, "empty_batch"),
        ({"jobs": "nope"}, 422, "validation_error"),
        ({"items": []}, 422, "validation_error"),
    ],
)
def test_bad_batches_are_4xx_and_create_nothing(idle: Client, db: Engine, body, status, code) -> None:
    before = job_count(db)
    assert_error(idle.post("/v1/jobs/batch", json=body), status, code)
    assert job_count(db) == before


def test_one_bad_batch_entry_rejects_the_batch_with_per_index_errors(idle: Client, db: Engine) -> None:
    before = job_count(db)
    entries = [{"analysis": "sentiment", "input": {"text": f"fine {i}"}} for i in range(10)]
    entries[3] = {"analysis": "sentiment", "input": {"text": ""}}
    entries[7] = {"analysis": "astrology", "input": {"text": "x"}}
    error = assert_error(idle.post("/v1/jobs/batch", json={"jobs": entries}), 422, "invalid_jobs")
    assert [(d["index"], d["code"]) for d in error["details"]] == [(3, "empty_text"), (7, "unknown_analysis")]
    assert job_count(db) == before


@pytest.mark.parametrize(
    ("method", "path", "params", "status", "code"),
    [
        ("GET", "/v1/jobs/job_doesnotexist", None, 404, "job_not_found"),
        ("POST", "/v1/jobs/job_doesnotexist/cancel", None, 404, "job_not_found"),
        ("DELETE", "/v1/jobs/job_doesnotexist", None, 404, "job_not_found"),
        ("GET", "/v1/jobs", {"cursor": "not-a-cursor"}, 400, "invalid_cursor"),
        ("GET", "/v1/jobs", {"cursor": "WyJ4Il0"}, 400, "invalid_cursor"),
        ("GET", "/v1/jobs", {"limit": "0"}, 400, "invalid_limit"),
        ("GET", "/v1/jobs", {"limit": "abc"}, 400, "invalid_limit"),
        ("GET", "/v1/jobs", {"status": "done"}, 400, "invalid_status"),
        ("GET", "/v1/jobs/job_x", {"wait": "31"}, 400, "invalid_wait"),
        ("GET", "/v1/jobs/job_x", {"wait": "soon"}, 400, "invalid_wait"),
        ("GET", "/v1/nothing-here", None, 404, "not_found"),
        ("PUT", "/v1/jobs", None, 405, "method_not_allowed"),
    ],
)
def test_bad_reads_are_4xx(idle: Client, method, path, params, status, code) -> None:
    assert_error(idle.request(method, path, params=params), status, code)


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "missing_api_key"),
        ({"Authorization": "Bearer assay_not-a-real-key"}, "invalid_api_key"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "invalid_authorization"),
        ({"Authorization": "Bearer "}, "invalid_authorization"),
    ],
)
def test_bad_or_missing_api_key_is_401(idle_api: str, db: Engine, headers, code) -> None:
    anonymous = Client(idle_api, None)
    before = job_count(db)
    body = {"analysis": "sentiment", "input": {"text": "hi"}}
    for response in (
        anonymous.post("/v1/jobs", json=body, headers=headers),
        anonymous.get("/v1/jobs", headers=headers),
    ):
        assert_error(response, 401, code)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert job_count(db) == before


def test_revoked_key_is_refused(idle_api: str, db: Engine) -> None:
    from store.keys import create_key, revoke_key

    with db.begin() as conn:
        issued = create_key(conn, f"revoked-{secrets.token_hex(3)}")
    client = Client(idle_api, issued.secret)
    assert client.get("/v1/jobs").status_code == 200
    with db.begin() as conn:
        assert revoke_key(conn, issued.key_id)
    assert_error(client.get("/v1/jobs"), 401, "invalid_api_key")


def test_request_body_over_the_byte_limit_is_413(stack: Stack, new_key) -> None:
    _, url = stack.api(ASSAY_MAX_REQUEST_BYTES="2048", ASSAY_QUEUE_PREFIX="idle-small")
    client = Client(url, new_key())
    body = json.dumps({"analysis": "sentiment", "input": {"text": "y" * 5000}})
    error = assert_error(
        client.post("/v1/jobs", data=body, headers={"Content-Type": "application/json"}), 413, "request_too_large"
    )
    # README: a 413's details have `limit` and `actual` where they are known; a declared length is known.
    assert error["details"] == {"limit": 2048, "actual": len(body)}, error
    assert "2048" in error["message"], error
