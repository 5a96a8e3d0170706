"""The worker's service function, called directly (as warehouse tests task bodies) on the real DB and model."""

from __future__ import annotations

import secrets
import time
from dataclasses import replace

import pytest
from sqlalchemy import Engine, select, text

from config.settings import Settings
from pipeline.batch import process_jobs
from pipeline.context import WorkerContext
from store import api as q
from store.keys import ensure_tenant
from store.maintenance import sweep
from store.tables import jobs
from tests.integration.helpers import worker_context


@pytest.fixture(scope="module")
def ctx(settings: Settings, db: Engine, redis_client) -> WorkerContext:
    return worker_context(settings, db, redis_client)


def make(db: Engine, inputs: list[dict], analysis: str = "sentiment") -> list[str]:
    with db.begin() as conn:
        owner = ensure_tenant(conn, f"svc-{secrets.token_hex(4)}")
        created = q.create_jobs(conn, owner, [q.JobSpec(analysis, payload) for payload in inputs])
    return [r["id"] for r in created.rows]


def stored(db: Engine, ids: list[str]) -> dict[str, dict]:
    with db.connect() as conn:
        return {r["id"]: dict(r) for r in conn.execute(select(jobs).where(jobs.c.id.in_(ids))).mappings()}


def test_one_bad_input_fails_only_its_own_job(ctx: WorkerContext, db: Engine) -> None:
    ids = make(db, [{"text": "I love this product"}, {"text": 42}, {"text": "   "}, {"text": "awful, broken"}])
    report = process_jobs(ctx, ids)
    assert report.claimed == 4 and report.model_batches == [4]
    rows = stored(db, ids)
    assert rows[ids[0]]["status"] == "succeeded" and rows[ids[0]]["result"]["label"] == "positive"
    assert rows[ids[1]]["status"] == "failed" and rows[ids[1]]["error_code"] == "invalid_input"
    assert rows[ids[2]]["status"] == "failed" and rows[ids[2]]["error_code"] == "empty_text"
    assert rows[ids[3]]["status"] == "succeeded" and rows[ids[3]]["result"]["label"] == "negative"


def test_unknown_analysis_fails_with_a_code(ctx: WorkerContext, db: Engine) -> None:
    (job_id,) = make(db, [{"text": "hi"}], analysis="retired_analysis")
    process_jobs(ctx, [job_id])
    assert stored(db, [job_id])[job_id]["error_code"] == "unknown_analysis"


def test_duplicate_delivery_changes_nothing(ctx: WorkerContext, db: Engine) -> None:
    ids = make(db, [{"text": f"pleasant day number {i}"} for i in range(5)])
    first = process_jobs(ctx, ids + ids)  # the same ids twice in one flush, too
    before = stored(db, ids)
    again = process_jobs(ctx, ids)
    assert first.claimed == 5 and again.claimed == 0 and again.written == {}
    assert stored(db, ids) == before


def test_model_batches_are_capped_at_max_batch_size(ctx: WorkerContext, db: Engine) -> None:
    ids = make(db, [{"text": f"sentence {i}"} for i in range(ctx.settings.max_batch_size * 2 + 3)])
    report = process_jobs(ctx, ids)
    size = ctx.settings.max_batch_size
    assert report.model_batches == [size, size, 3]
    assert set(report.written.values()) == {"succeeded"}


class PoisonedEngines:
    """The real engines, except that any call including the poison text raises, as a crashing model would."""

    POISON = "a text this model chokes on"

    def __init__(self, real, error: Exception | None = None) -> None:
        self.real = real
        self.load_seconds = real.load_seconds
        self.calls: list[int] = []
        self.error = error or RuntimeError("CUDA error: device-side assert triggered")

    def load(self, families=None) -> None:
        self.real.load(families)

    def warm_up(self) -> None:
        self.real.warm_up()

    def predict_text(self, items):
        self.calls.append(len(items))
        if any(text == self.POISON for _, text in items):
            raise self.error
        return self.real.predict_text(items)

    @property
    def speech(self):
        return self.real.speech


def test_one_item_whose_engine_raises_fails_alone(ctx: WorkerContext, db: Engine) -> None:
    poisoned = replace(ctx, _engines=PoisonedEngines(ctx.engines))
    texts = ["I love this product", PoisonedEngines.POISON, "awful, broken", "fine, thanks"]
    ids = make(db, [{"text": t} for t in texts])
    report = process_jobs(poisoned, ids)
    rows = stored(db, ids)
    assert report.model_batches == [4]
    assert rows[ids[1]]["status"] == "failed" and rows[ids[1]]["error_code"] == "inference_error"
    assert "CUDA error" in rows[ids[1]]["error_message"]
    for i in (0, 2, 3):
        assert rows[ids[i]]["status"] == "succeeded", rows[ids[i]]
    assert rows[ids[0]]["result"]["label"] == "positive" and rows[ids[2]]["result"]["label"] == "negative"
    assert poisoned._engines.calls[0] == 4, "the whole batch was tried first"


def test_a_job_that_runs_out_of_memory_is_handed_back_and_fails_only_on_its_last_attempt(
    ctx: WorkerContext, db: Engine
) -> None:
    """Memory or disk running out is not the job's fault: no outcome is written, its lease is cut to
    ASSAY_TRANSIENT_RETRY_SECONDS and the sweeper requeues it; its last attempt fails with the error."""
    settings = ctx.settings.model_copy(update={"transient_retry_seconds": 1, "max_attempts": 2})
    starved = replace(ctx, settings=settings, _engines=PoisonedEngines(ctx.engines, MemoryError("could not allocate")))
    texts = ["I love this product", PoisonedEngines.POISON, "awful, broken"]
    ids = make(db, [{"text": t} for t in texts])

    first = process_jobs(starved, ids)
    rows = stored(db, ids)
    assert first.handed_back == [ids[1]] and set(first.written) == {ids[0], ids[2]}
    assert rows[ids[0]]["status"] == rows[ids[2]]["status"] == "succeeded"
    assert rows[ids[1]]["status"] == "running" and rows[ids[1]]["attempts"] == 1 and rows[ids[1]]["result"] is None
    with db.connect() as conn:
        lease_left = conn.execute(
            text("SELECT extract(epoch FROM lease_expires_at - now()) FROM jobs WHERE id = :id"), {"id": ids[1]}
        ).scalar_one()
    assert 0 < lease_left <= 1.5, f"the lease is cut to the retry delay, not renewed: {lease_left:.1f} s left"

    time.sleep(1.2)
    with db.begin() as conn:
        found = sweep(conn, epoch=None, drained=[], requeue_after_seconds=120, max_attempts=2, limit=1000)
    assert ids[1] not in {job_id for job_id, _ in found.exhausted}
    assert stored(db, [ids[1]])[ids[1]]["status"] == "queued"

    last = process_jobs(starved, [ids[1]])
    row = stored(db, [ids[1]])[ids[1]]
    assert last.handed_back == [] and row["attempts"] == 2
    assert row["status"] == "failed" and row["error_code"] == "inference_error"
    assert row["error_message"].startswith("MemoryError: could not allocate")
