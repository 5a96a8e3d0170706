"""The batched analysis task: many job ids in, one claim, model batches, one write per batch."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from celery import Celery
from celery_batches import Batches

from config import Settings
from config.celery import ANALYZE_TASK
from config.logging import bound
from models.base import InputError, TextEngine
from store.jobs import ClaimedJob, Outcome, claim_jobs, finish_jobs
from store.notify import notify_finished
from tasks.context import WorkerContext, get_context
from tasks.events import JobEvents

log = logging.getLogger(__name__)


@dataclass
class BatchReport:
    received: int = 0
    claimed: int = 0
    written: dict[str, str] = field(default_factory=dict)
    model_batches: list[int] = field(default_factory=list)


def text_of(job: ClaimedJob) -> str | InputError:
    text = job.input.get("text")
    if not isinstance(text, str):
        return InputError("invalid_input", "input.text must be a string")
    return text


def run_engine(engine: TextEngine, jobs: list[ClaimedJob]) -> list[Outcome]:
    """Predict for a model batch; an error in one input fails only that input's job.

    A batch-wide exception is retried one input at a time to find the input that caused it,
    so a single poisonous text cannot fail its neighbours.
    """
    texts = [text_of(job) for job in jobs]
    valid = [i for i, t in enumerate(texts) if isinstance(t, str)]
    predictions: dict[int, Any] = {i: t for i, t in enumerate(texts) if isinstance(t, InputError)}
    try:
        for i, prediction in zip(valid, engine.predict([texts[i] for i in valid]), strict=True):  # type: ignore[misc]
            predictions[i] = prediction
    except Exception:
        log.exception("batch inference failed; retrying inputs one at a time", extra={"size": len(valid)})
        for i in valid:
            try:
                predictions[i] = engine.predict([texts[i]])[0]  # type: ignore[list-item]
            except Exception as exc:
                predictions[i] = InputError("inference_error", f"{type(exc).__name__}: {exc}")
    outcomes = []
    for i, job in enumerate(jobs):
        prediction = predictions[i]
        if isinstance(prediction, InputError):
            outcomes.append(Outcome(job.id, job.attempt, error_code=prediction.code, error_message=prediction.message))
        else:
            outcomes.append(Outcome(job.id, job.attempt, result=prediction.to_json()))
    return outcomes


def _fail_all(jobs: list[ClaimedJob], code: str, message: str) -> list[Outcome]:
    return [Outcome(j.id, j.attempt, error_code=code, error_message=message) for j in jobs]


def process_jobs(ctx: WorkerContext, job_ids: list[str], events: JobEvents | None = None) -> BatchReport:
    """Run jobs in model batches: per batch one claim (inputs + lease), one model call, one write.

    Claiming batch by batch, just before the model runs, keeps each lease about one model
    call long however many messages a flush delivered. No database connection is held while
    the model runs. Ids already running, finished or canceled are skipped by the claim.
    """
    settings: Settings = ctx.settings
    unique_ids = list(dict.fromkeys(job_ids))
    report = BatchReport(received=len(unique_ids))
    size = settings.max_batch_size
    for start in range(0, len(unique_ids), size):
        with ctx.db.begin() as conn:
            claimed = claim_jobs(conn, unique_ids[start : start + size], settings.lease_seconds)
        if not claimed:
            continue
        report.claimed += len(claimed)
        if events:
            for job in claimed:
                events.started(job.id, job.analysis, job.attempt)
        by_analysis: dict[str, list[ClaimedJob]] = defaultdict(list)
        for job in claimed:
            by_analysis[job.analysis].append(job)
        started = time.perf_counter()
        outcomes: list[Outcome] = []
        for analysis, group in by_analysis.items():
            if analysis in ctx.catalog:
                outcomes += run_engine(ctx.registry.engine(analysis), group)
            else:
                outcomes += _fail_all(group, "unknown_analysis", f"{analysis!r} is not served by this worker")
        elapsed = time.perf_counter() - started
        with ctx.db.begin() as conn:
            written = finish_jobs(conn, outcomes)
        notify_finished(ctx.redis, written)
        report.written.update(written)
        report.model_batches.append(len(claimed))
        log.info(
            "batch processed",
            extra={"size": len(claimed), "written": len(written), "seconds": round(elapsed, 4)},
        )
        for outcome in outcomes:
            if outcome.job_id in written:
                log.info(
                    "job finished",
                    extra={"job_id": outcome.job_id, "status": outcome.status, "attempt": outcome.attempt},
                )
                if events:
                    events.finished(outcome.job_id, outcome.status, elapsed, outcome.error_code)
    return report


_events: dict[str, JobEvents] = {}


def register_analyze(app: Celery, settings: Settings) -> None:
    """Register the batch consumer with this deployment's batch size and wait."""

    @app.task(
        name=ANALYZE_TASK,
        base=Batches,
        bind=True,
        flush_every=settings.max_batch_size,
        flush_interval=settings.max_batch_wait_ms / 1000,
        acks_late=True,
        ignore_result=True,
    )
    def analyze(self, requests: list[Any]) -> None:
        job_ids = [job_id for request in requests for job_id in (request.args[0] if request.args else [])]
        hostname = requests[0].hostname if requests else "worker"
        events = _events.setdefault(hostname, JobEvents(self.app, hostname))
        with bound(messages=len(requests)):
            process_jobs(get_context(), job_ids, events)
