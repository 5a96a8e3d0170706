"""The batched analysis task: many job ids in, one claim, model batches, one write per batch."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from celery import Celery
from celery_batches import Batches

from config import Settings
from config.celery import ANALYZE_TASK
from config.logging import bound
from store.jobs import ClaimedJob, Outcome, claim_jobs, finish_jobs, load_blobs
from store.notify import notify_finished
from store.webhooks import create_events
from tasks import metrics
from tasks.context import WorkerContext, get_context
from tasks.events import JobEvents
from tasks.inference import run_audio, run_text
from tasks.webhooks import publish_or_defer

log = logging.getLogger(__name__)


@dataclass
class BatchReport:
    received: int = 0
    claimed: int = 0
    written: dict[str, str] = field(default_factory=dict)
    model_batches: list[int] = field(default_factory=list)


def _fail_all(jobs: list[ClaimedJob], code: str, message: str) -> list[Outcome]:
    return [Outcome(j.id, j.attempt, error_code=code, error_message=message) for j in jobs]


def run_batch(ctx: WorkerContext, claimed: list[ClaimedJob]) -> list[Outcome]:
    """Outcomes for one claimed model batch: text jobs in one call, audio jobs in one call."""
    text = [job for job in claimed if job.analysis in ctx.catalog and ctx.catalog[job.analysis].input == "text"]
    audio = [job for job in claimed if job.analysis in ctx.catalog and ctx.catalog[job.analysis].input == "audio"]
    unknown = [job for job in claimed if job.analysis not in ctx.catalog]
    outcomes = _fail_all(unknown, "unknown_analysis", "this analysis is not served by this deployment")
    if text:
        outcomes += run_text(ctx.registry, text)
    if audio:
        with ctx.db.connect() as conn:
            blobs = load_blobs(conn, [job.id for job in audio])
        outcomes += run_audio(ctx.registry, ctx.catalog, audio, blobs)
    return outcomes


def _family(ctx: WorkerContext, analysis: str) -> str:
    return ctx.catalog[analysis].family if analysis in ctx.catalog else "unknown"


def observe_claimed(ctx: WorkerContext, claimed: list[ClaimedJob]) -> None:
    for job in claimed:
        if job.created_at and job.started_at:
            metrics.QUEUE_WAIT.labels(job.analysis).observe((job.started_at - job.created_at).total_seconds())
    for family, size in Counter(_family(ctx, job.analysis) for job in claimed).items():
        metrics.BATCH_SIZE.labels(family).observe(size)


def observe_finished(ctx: WorkerContext, claimed: list[ClaimedJob], written: dict[str, str], seconds: float) -> None:
    now = datetime.now(UTC)
    for family in {_family(ctx, job.analysis) for job in claimed}:
        metrics.INFERENCE.labels(family).observe(seconds)
    for job in claimed:
        status = written.get(job.id)
        if status is None:
            continue
        metrics.JOBS_FINISHED.labels(job.analysis, status).inc()
        if job.created_at:
            metrics.JOB_LATENCY.labels(job.analysis).observe((now - job.created_at).total_seconds())
    metrics.record_gpu_memory()


@dataclass
class _Finished:
    """One model batch, computed and waiting to be written."""

    claimed: list[ClaimedJob]
    hooked: list[str]
    outcomes: list[Outcome]
    seconds: float


def _write(
    ctx: WorkerContext,
    batch: _Finished,
    report: BatchReport,
    events: JobEvents | None,
    publish_webhooks: Callable[[list[str]], None] | None,
) -> None:
    """One statement writes the batch; then notifications, webhooks, metrics, Flower events and logs."""
    with ctx.db.begin() as conn:
        written = finish_jobs(conn, batch.outcomes)
        # Same transaction as the result: exactly one job.succeeded/failed, even on a re-run.
        finished_hooked = [job_id for job_id in batch.hooked if job_id in written]
        webhook_events = create_events(conn, finished_hooked, ctx.settings.webhook_publish_grace_seconds)
    notify_finished(ctx.redis, written)
    if publish_webhooks:
        publish_webhooks(webhook_events)
    observe_finished(ctx, batch.claimed, written, batch.seconds)
    report.written.update(written)
    log.info(
        "batch processed",
        extra={"size": len(batch.claimed), "written": len(written), "seconds": round(batch.seconds, 4)},
    )
    for job in batch.claimed:
        if events:
            events.started(job.id, job.analysis, job.attempt)
    for outcome in batch.outcomes:
        if outcome.job_id in written:
            log.info(
                "job finished",
                extra={"job_id": outcome.job_id, "status": outcome.status, "attempt": outcome.attempt},
            )
            if events:
                events.finished(outcome.job_id, outcome.status, batch.seconds, outcome.error_code)


def process_jobs(
    ctx: WorkerContext,
    job_ids: list[str],
    events: JobEvents | None = None,
    publish_webhooks: Callable[[list[str]], None] | None = None,
) -> BatchReport:
    """Run jobs in model batches: per batch one claim (inputs + lease), one model call, one write.

    Claiming batch by batch, just before the model runs, keeps each lease about one model call
    long however many messages a flush delivered. No database connection is held while the
    model runs. Ids already running, finished or canceled are skipped by the claim. Writing
    batch k (and its notifications, events and logs) happens on a second thread while the model
    runs batch k+1; at most one write is in flight, and all are done before this returns (so
    before the flush's messages are acknowledged).
    """
    settings: Settings = ctx.settings
    unique_ids = list(dict.fromkeys(job_ids))
    report = BatchReport(received=len(unique_ids))
    size = settings.max_batch_size
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="assay-writer") as writer:
        pending: Future[None] | None = None
        for start in range(0, len(unique_ids), size):
            wanted = unique_ids[start : start + size]
            with ctx.db.begin() as conn:
                claimed = claim_jobs(conn, wanted, settings.lease_seconds)
                hooked = [job.id for job in claimed if job.webhook]
                started_events = create_events(conn, hooked, settings.webhook_publish_grace_seconds)
            if publish_webhooks:
                publish_webhooks(started_events)
            if len(claimed) < len(wanted):
                taken = {job.id for job in claimed}
                skipped = [job_id for job_id in wanted if job_id not in taken]
                log.info("already handled", extra={"job_ids": skipped})  # duplicate delivery, cancel, erasure
            if not claimed:
                continue
            report.claimed += len(claimed)
            report.model_batches.append(len(claimed))
            observe_claimed(ctx, claimed)
            began = time.perf_counter()
            outcomes = run_batch(ctx, claimed)
            batch = _Finished(claimed, hooked, outcomes, time.perf_counter() - began)
            if pending is not None:
                pending.result()  # one write in flight at most; re-raises its error here
            pending = writer.submit(_write, ctx, batch, report, events, publish_webhooks)
        if pending is not None:
            pending.result()
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
        ctx = get_context()
        with bound(messages=len(requests)):
            process_jobs(ctx, job_ids, events, lambda ids: publish_or_defer(self.app, ctx.settings, ids))
