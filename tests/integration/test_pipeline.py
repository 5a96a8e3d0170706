"""End to end: real gunicorn → PostgreSQL → Redis → real Celery worker (real MiniLM) → poll."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import Engine

from tests.integration.helpers import wait_all_final
from tests.support import Client, Proc, Stack, free_port, wait_for

METRICS_PORT = free_port()


@pytest.fixture(scope="module")
def worker(stack: Stack) -> Proc:
    return stack.worker("pipeline", ASSAY_WORKER_METRICS_PORT=str(METRICS_PORT))


def test_submit_then_wait_returns_the_real_models_answer(client: Client, worker: Proc) -> None:
    positive = client.submit("I love this product")
    job = client.get(f"/v1/jobs/{positive['id']}", params={"wait": 10}).json()
    assert job["status"] == "succeeded", job
    result = job["result"]
    assert result["label"] == "positive"
    assert set(result["scores"]) == {"positive", "negative", "neutral"}
    assert abs(sum(result["scores"].values()) - 1) < 1e-3
    assert result["score"] == max(result["scores"].values())
    assert result["truncated"] is False
    assert "MiniLM" in result["model"]
    assert job["attempts"] == 1 and job["started_at"] and job["completed_at"]

    negative = client.submit("This is the worst service I have ever had")
    job = client.get(f"/v1/jobs/{negative['id']}", params={"wait": 10}).json()
    assert job["status"] == "succeeded" and job["result"]["label"] == "negative"


def test_long_text_is_truncated_and_flagged(client: Client, worker: Proc) -> None:
    job = client.submit("I love this product. " * 200)
    done = client.get(f"/v1/jobs/{job['id']}", params={"wait": 15}).json()
    assert done["status"] == "succeeded"
    assert done["result"]["truncated"] is True
    assert done["result"]["label"] == "positive"


def test_500_jobs_through_the_batch_endpoint_all_succeed_in_real_batches(
    client: Client, worker: Proc, db: Engine
) -> None:
    texts = [f"Review {i}: " + ("I love it, great value" if i % 2 else "awful, it broke at once") for i in range(500)]
    created = client.submit_batch(texts)
    assert len(created) == 500
    ids = [job["id"] for job in created]
    assert set(wait_all_final(db, ids, timeout=180).values()) == {"succeeded"}
    page = client.get("/v1/jobs", params={"limit": 200}).json()["data"]
    labels = {job["id"]: job["result"]["label"] for job in page}
    assert len(labels) == 200
    assert (
        sum(labels[job_id] == ("positive" if i % 2 else "negative") for i, job_id in enumerate(ids) if job_id in labels)
        > 180
    )

    sizes = [r["size"] for r in worker.batches_logged(len(ids))]
    mean = sum(sizes) / len(sizes)
    assert mean >= 8, f"mean model batch {mean:.1f} over {len(sizes)} batches"


def test_single_submissions_are_batched_across_requests(client: Client, worker: Proc, db: Engine) -> None:
    """Eight clients at once: jobs that arrive while a batch runs are taken together by the next one."""
    before = len(worker.log_events("batch processed"))
    clients = [Client(client.base, client.session.headers["Authorization"].split()[1]) for _ in range(8)]
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda i: clients[i % 8].submit(f"message {i}: this is fine")["id"], range(160)))
    assert set(wait_all_final(db, ids, timeout=120).values()) == {"succeeded"}
    sizes = [r["size"] for r in worker.batches_logged(len(ids), since=before)]
    assert max(sizes) > 1, sizes


def test_cancel_of_a_finished_job_is_refused(client: Client, worker: Proc) -> None:
    job = client.submit("done soon")
    wait_for(lambda: client.get(f"/v1/jobs/{job['id']}", params={"wait": 5}).json()["status"] == "succeeded", 30)
    response = client.post(f"/v1/jobs/{job['id']}/cancel")
    assert response.status_code == 409 and response.json()["error"]["code"] == "job_not_cancelable"


def metric(text: str, name: str, missing: float | None = None, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels` (`missing` when none is exposed yet)."""
    total, found = 0.0, False
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
            found = True
    if not found and missing is not None:
        return missing
    assert found, f"{name} {labels} not exposed"
    return total


def test_metrics_on_the_api_and_on_the_worker_have_real_values(client: Client, worker: Proc, api_url: str) -> None:
    import requests

    def worker_metrics() -> str:
        return requests.get(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=5).text

    before = metric(worker_metrics(), "assay_jobs_finished_total", analysis="sentiment", status="succeeded", missing=0)
    ids = [job["id"] for job in client.submit_batch([f"metrics {i}: nice" for i in range(40)])]
    # Counters move after each batch's commit lands: poll until this test's 40 jobs are counted.
    worker_text = wait_for(
        lambda: (
            text
            if metric(
                text := worker_metrics(),
                "assay_jobs_finished_total",
                missing=0,
                analysis="sentiment",
                status="succeeded",
            )
            >= before + len(ids)
            else None
        ),
        120,
        what="the worker counting this test's jobs",
    )
    assert metric(worker_text, "assay_batch_size_count", family="text") >= 2
    assert metric(worker_text, "assay_batch_size_sum", family="text") >= 40
    assert metric(worker_text, "assay_inference_seconds_count", family="text") >= 2
    assert metric(worker_text, "assay_queue_wait_seconds_count", analysis="sentiment") >= 40
    assert metric(worker_text, "assay_job_latency_seconds_count", analysis="sentiment") >= 40
    assert metric(worker_text, "assay_model_load_seconds", model="all-MiniLM-L6-v2") > 0
    assert "assay_queue_depth{" in worker_text

    assert client.get(f"/v1/jobs/{ids[-1]}").json()["status"] == "succeeded"
    scraped = requests.get(f"{api_url}/metrics", timeout=5)
    api_text = scraped.text
    # One charset parameter: werkzeug added a second, and Prometheus 3 refuses a doubled parameter.
    for answer in (scraped, requests.get(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=5)):
        content_type = answer.headers["Content-Type"]
        assert content_type.startswith("text/plain") and content_type.count("charset") == 1, content_type
    assert metric(api_text, "assay_jobs_submitted_total", analysis="sentiment") >= 40
    assert metric(api_text, "assay_http_requests_total", route="/v1/jobs/batch", status="202") >= 1
    assert metric(api_text, "assay_http_request_seconds_count", route="/v1/jobs/<job_id>") >= 1
    assert metric(api_text, "assay_queue_depth") >= 0
