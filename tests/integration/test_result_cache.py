"""The result cache, in-flight coalescing, embeddings and diagnostics, through the HTTP API with real workers.

One inference worker start for the whole module: jobs are submitted while no worker runs (so they
coalesce), the worker then runs them (one model input per distinct key), and is stopped again before
repeats are submitted (so a hit provably needs no worker).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import Engine, select

from store.keys import create_key
from store.tables import jobs
from tests.integration.helpers import wait_all_final
from tests.receiver import Receiver
from tests.support import Client, Proc, Stack, free_port, wait_for

# Queues of this module's own: nothing another module left in the session's queues reaches this worker.
ENV = {
    "ASSAY_QUEUE_PREFIX": f"rc{secrets.token_hex(3)}",
    "ASSAY_WEBHOOK_ALLOW_PRIVATE": "true",
    "ASSAY_WEBHOOK_SCHEDULE_SECONDS": "[1, 1, 1]",
}


def rows(db: Engine, ids: list[str]) -> dict[str, Any]:
    with db.connect() as conn:
        found = conn.execute(
            select(jobs.c.id, jobs.c.status, jobs.c.attempts, jobs.c.coalesced_into).where(jobs.c.id.in_(ids))
        )
        return {r.id: r for r in found}


def tenant_key(db: Engine) -> str:
    with db.begin() as conn:
        return create_key(conn, f"tenant-{secrets.token_hex(4)}").secret


@dataclass
class Scene:
    """What the module's set-up submitted, and the processes it left running."""

    api: str
    client: Client
    other: Client
    receiver: Receiver
    worker: Proc
    batch: list[str] = field(default_factory=list)  # 200 identical jobs, one batch request
    trio: list[str] = field(default_factory=list)  # 3 identical jobs: source canceled, one attached canceled
    source: str = ""  # the job whose result the cache then serves
    embedding: str = ""
    options_job: str = ""
    attached_before_start: int = 0
    text: str = ""


@pytest.fixture(scope="module")
def scene(stack: Stack, db: Engine) -> Scene:
    receiver = Receiver(free_port()).start()
    api = stack.api(**ENV)[1]
    client, other = Client(api, tenant_key(db)), Client(api, tenant_key(db))
    receiver.secrets.append(client.get("/v1/webhooks/secret").json()["secret"])
    hook = {"url": f"{receiver.url}/ok/{secrets.token_hex(3)}"}
    token = secrets.token_hex(4)

    # No worker runs yet: identical jobs find their source queued and attach to it.
    body = {"jobs": [{"analysis": "sentiment", "input": {"text": f"same {token}: great"}}] * 200, "webhook": hook}
    response = client.post("/v1/jobs/batch", json=body)
    assert response.status_code == 202, response.text
    scene = Scene(api, client, other, receiver, worker=None)  # type: ignore[arg-type]
    scene.batch = [job["id"] for job in response.json()["data"]]
    scene.attached_before_start = sum(r.coalesced_into == scene.batch[0] for r in rows(db, scene.batch).values())

    scene.trio = [client.submit(f"trio {token}", webhook=hook)["id"] for _ in range(3)]
    assert client.post(f"/v1/jobs/{scene.trio[0]}/cancel").status_code == 200  # the source
    assert client.post(f"/v1/jobs/{scene.trio[2]}/cancel").status_code == 200  # an attached job

    scene.text = f"I love this product {token}"
    scene.source = client.submit(scene.text)["id"]
    scene.embedding = client.submit(scene.text, analysis="embedding")["id"]
    options = {"return_embedding": True, "return_diagnostics": True}
    scene.options_job = client.submit(scene.text, options=options)["id"]

    stack.webhooks(**ENV)
    scene.worker = stack.worker("cache", **ENV)
    ids = [*scene.batch, *scene.trio, scene.source, scene.embedding, scene.options_job]
    wait_all_final(db, ids, timeout=60)
    yield scene
    receiver.stop()


def test_identical_jobs_in_flight_coalesce_into_one_model_input_and_each_gets_its_webhook(
    scene: Scene, db: Engine
) -> None:
    assert scene.attached_before_start == 199
    found = rows(db, scene.batch)
    assert {r.status for r in found.values()} == {"succeeded"}
    assert [r.attempts for r in found.values()].count(1) == 1  # the one job a worker claimed
    assert sum(r.attempts for r in found.values()) == 1
    results = {json.dumps(scene.client.get(f"/v1/jobs/{i}").json()["result"], sort_keys=True) for i in scene.batch}
    assert len(results) == 1 and json.loads(results.pop())["label"] == "positive"

    # Model inputs, from the worker's own batch log: 200 + 3 + 3 jobs submitted, 5 keys ran.
    sizes = [r["size"] for r in scene.worker.batches_logged(5)]
    assert sum(sizes) == 5, sizes

    def delivered() -> list[Any]:
        return [r for r in scene.receiver.of_type("job.succeeded") if r.payload["data"]["id"] in scene.batch]

    wait_for(lambda: len(delivered()) >= 200, 60, what="200 webhooks")
    got = delivered()
    assert all(r.valid for r in got)
    assert {r.payload["data"]["id"] for r in got} == set(scene.batch)
    assert len({r.webhook_id for r in got}) == 200


def test_cancelling_the_source_or_one_attached_job_leaves_the_others(scene: Scene, db: Engine) -> None:
    found = rows(db, scene.trio)
    assert [found[i].status for i in scene.trio] == ["canceled", "succeeded", "canceled"]
    assert found[scene.trio[1]].attempts == 1  # the heir ran itself
    assert scene.client.get(f"/v1/jobs/{scene.trio[1]}").json()["result"]["label"]


def test_a_repeat_is_served_from_the_cache_with_no_worker_running(scene: Scene, db: Engine, stack: Stack) -> None:
    scene.worker.stop()
    source = scene.client.get(f"/v1/jobs/{scene.source}").json()
    hook = {"url": f"{scene.receiver.url}/ok/{secrets.token_hex(3)}"}
    # Only the same text: with whitespace changed it may score differently (test_result_cache_keys.py).
    spaced = scene.client.submit("  " + scene.text + " ")
    assert spaced["status"] == "queued", spaced
    assert scene.client.post(f"/v1/jobs/{spaced['id']}/cancel").status_code == 200
    hit = scene.client.submit(scene.text, webhook=hook)
    assert hit["id"] != source["id"]
    assert hit["status"] == "succeeded", hit
    assert hit["result"] == {**source["result"], "cached": True}
    assert hit["completed_at"] == source["completed_at"]
    assert scene.client.get(f"/v1/jobs/{hit['id']}").json()["result"]["cached"] is True
    wait_for(
        lambda: any(r.payload["data"]["id"] == hit["id"] for r in scene.receiver.of_type("job.succeeded")),
        30,
        what="the hit's own webhook",
    )

    pending = []
    # Another tenant's identical text is not served from this tenant's cache.
    pending.append(scene.other.submit(scene.text))
    # Opting out per request.
    pending.append(scene.client.submit(scene.text, options={"cache": False}))
    # Another model behind the analysis (same files, another name: a new head version) misses.
    from models.encoder import packaged_minilm_path

    models = json.dumps({"sentiment": f"embedding-prototype:{packaged_minilm_path()}"})
    _, other_api = stack.api(ASSAY_ANALYSIS_MODELS=models, **ENV)
    pending.append(Client(other_api, scene.client.session.headers["Authorization"].split()[1]).submit(scene.text))
    # Erasure of the source removes its entry: the next identical job misses.
    assert scene.client.delete(f"/v1/jobs/{scene.source}").status_code == 200
    pending.append(scene.client.submit(scene.text))
    assert [job["status"] for job in pending] == ["queued"] * 4
    for job, client in zip(pending, [scene.other, scene.client, scene.client, scene.client], strict=True):
        assert client.post(f"/v1/jobs/{job['id']}/cancel").status_code == 200


def test_embedding_equals_the_encoder_and_diagnostics_are_plausible(scene: Scene) -> None:
    from models.encoder import SentenceEncoder, packaged_minilm_path

    encoder = SentenceEncoder(packaged_minilm_path(), device="cpu", max_length=256)
    direct = encoder.encode([scene.text]).vectors[0].tolist()
    tokens = encoder.token_lengths([scene.text])[0]

    plain = scene.client.get(f"/v1/jobs/{scene.embedding}").json()["result"]
    assert set(plain) == {"embedding", "model", "truncated"}
    for result in (plain, scene.client.get(f"/v1/jobs/{scene.options_job}").json()["result"]):
        vector = result["embedding"]["vector"]
        assert result["embedding"]["dimension"] == len(vector) == len(direct) == 384
        assert max(abs(a - b) for a, b in zip(vector, direct, strict=True)) < 1e-5
        assert "MiniLM" in result["embedding"]["model"]

    diagnostics = scene.client.get(f"/v1/jobs/{scene.options_job}").json()["result"]["diagnostics"]
    assert diagnostics["tokens"] == tokens and diagnostics["truncated"] is False
    assert 1 <= diagnostics["batch_size"] <= 32
    assert 0 < diagnostics["model_ms"] < 60_000 and diagnostics["claim_ms"] >= 0 and diagnostics["queued_ms"] > 0
    assert diagnostics["engine"] == "embedding-head" and diagnostics["head_version"].startswith("v1-")
    assert set(diagnostics["engine_versions"]) >= {"torch", "transformers"}


def test_return_embedding_where_no_encoder_computes_one_is_a_422(scene: Scene) -> None:
    body = {"analysis": "transcription", "input": {"audio_base64": "AAAA"}, "options": {"return_embedding": True}}
    response = scene.client.post("/v1/jobs", json=body)
    assert response.status_code == 422 and response.json()["error"]["code"] == "option_not_supported"
    response = scene.client.post(
        "/v1/jobs", json={"analysis": "sentiment", "input": {"text": "x"}, "options": {"nope": True}}
    )
    assert response.status_code == 422 and response.json()["error"]["code"] == "validation_error"
