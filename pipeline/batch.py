"""The inference worker's batch: many job ids in; per model batch one claim, one model call, one write."""

from __future__ import annotations

import logging
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from contract.documents import job_document
from models.base import InputError
from models.transient import is_transient
from pipeline.annotate import Timing, annotate
from pipeline.context import WorkerContext
from pipeline.inference import outcome, run_audio, run_text
from pipeline.lifecycle import Change
from pipeline.tabular import cdr_counts, discard_inputs, run_cdr
from store.db import retry_while_unreachable, unreachable
from store.tables import JobStatus
from store.worker import ClaimedJob, Outcome, claim_jobs, load_blobs, renew_leases, write_outcomes
from telemetry import metrics

log = logging.getLogger(__name__)


@dataclass
class BatchReport:
    received: int = 0
    claimed: int = 0
    written: dict[str, str] = field(default_factory=dict)
    model_batches: list[int] = field(default_factory=list)
    handed_back: list[str] = field(default_factory=list)


@dataclass
class Ran:
    """One model batch's outcomes, and the jobs handed back for another attempt (models.transient)."""

    outcomes: list[Outcome]
    handed_back: list[ClaimedJob] = field(default_factory=list)


def run_batch(ctx: WorkerContext, claimed: list[ClaimedJob]) -> Ran:
    """Outcomes for one claimed model batch; if anything in it raises, its jobs run one at a time.

    A bad item (a decoder, tokenizer or model error the engines did not turn into an input error)
    then fails alone, with `inference_error`, and never takes its neighbours down with it. A job
    whose run raised a transient error (memory, disk: models.transient) is handed back instead,
    unless this was its last attempt: then it fails with that error.

    PostgreSQL unreachable past the worker's patience (loading the batch's audio) is no job's fault: the
    error is raised, as when the batch's write gives up, and the sweeper hands the jobs on once their
    leases lapse. Running them one at a time would wait out the patience once per job, then fail each.
    """
    try:
        return Ran(_run_together(ctx, claimed))
    except Exception as exc:
        if unreachable(exc):
            raise
        log.exception("batch failed; running its jobs one at a time", extra={"size": len(claimed)})
    ran = Ran([])
    for job in claimed:
        try:
            ran.outcomes += _run_together(ctx, [job])
        except Exception as exc:
            if unreachable(exc):
                raise
            if is_transient(exc) and job.attempt < ctx.settings.max_attempts:
                log.warning(
                    "job handed back",
                    exc_info=True,
                    extra={
                        "job_id": job.id,
                        "attempt": job.attempt,
                        "retry_after_seconds": ctx.settings.transient_retry_seconds,
                    },
                )
                ran.handed_back.append(job)
                continue
            log.warning("job failed in inference", exc_info=True, extra={"job_id": job.id})
            ran.outcomes.append(outcome(job, InputError("inference_error", f"{type(exc).__name__}: {exc}"[:500])))
    return ran


def _run_together(ctx: WorkerContext, claimed: list[ClaimedJob]) -> list[Outcome]:
    """Text jobs in one call, audio jobs in one call."""
    kinds = {job.id: ctx.catalog[job.analysis].input if job.analysis in ctx.catalog else None for job in claimed}
    text = [job for job in claimed if kinds[job.id] == "text"]
    audio = [job for job in claimed if kinds[job.id] == "audio"]
    records = [job for job in claimed if kinds[job.id] == "cdr"]
    unknown = InputError("unknown_analysis", "this analysis is not served by this deployment")
    outcomes = [outcome(job, unknown) for job in claimed if kinds[job.id] is None]
    if text:
        outcomes += run_text(ctx.engines, text)
    if audio:
        blobs = retry_while_unreachable(
            lambda: _load_blobs(ctx, [job.id for job in audio]),
            patience_seconds=ctx.settings.db_outage_patience_seconds,
            what="load audio",
        )
        outcomes += run_audio(ctx.engines, ctx.catalog, audio, blobs, ctx.settings.max_audio_seconds)
    if records:
        outcomes += run_cdr(ctx, records)
    return outcomes


def _load_blobs(ctx: WorkerContext, job_ids: list[str]) -> dict[str, bytes]:
    with ctx.db.connect() as conn:
        return load_blobs(conn, job_ids)


def _family(ctx: WorkerContext, analysis: str) -> str:
    return ctx.catalog[analysis].family if analysis in ctx.catalog else "unknown"


def _observe_claimed(ctx: WorkerContext, claimed: list[ClaimedJob]) -> None:
    for job in claimed:
        if job.created_at and job.started_at:
            metrics.QUEUE_WAIT.labels(job.analysis).observe((job.started_at - job.created_at).total_seconds())
    for family, size in Counter(_family(ctx, job.analysis) for job in claimed).items():
        metrics.BATCH_SIZE.labels(family).observe(size)


@dataclass
class _Computed:
    """One model batch, computed and waiting to be written."""

    claimed: list[ClaimedJob]
    outcomes: list[Outcome]
    seconds: float
    handed_back: list[ClaimedJob] = field(default_factory=list)


def _write(ctx: WorkerContext, batch: _Computed, report: BatchReport) -> None:
    """One statement writes the batch; the job-finished path does everything that follows.

    PostgreSQL being away does not lose the computed results: the write is retried until it is back
    (up to `ASSAY_DB_OUTAGE_PATIENCE_SECONDS`), the leases renewed meanwhile once it answers.
    """
    try:
        written = retry_while_unreachable(
            lambda: _finish(ctx, batch),
            patience_seconds=ctx.settings.db_outage_patience_seconds,
            what="write results",
        )
    finally:
        ctx.leases.release([job.id for job in batch.claimed])
    discard_inputs(ctx, batch.claimed, written)
    for family in {_family(ctx, job.analysis) for job in batch.claimed}:
        metrics.INFERENCE.labels(family).observe(batch.seconds)
    metrics.record_gpu_memory()
    report.written.update(written)
    report.handed_back += [job.id for job in batch.handed_back]
    for job in batch.handed_back:
        metrics.JOBS_HANDED_BACK.labels(job.analysis).inc()
    log.info(
        "batch processed",
        extra={
            "size": len(batch.claimed),
            "written": len(written),
            "handed_back": len(batch.handed_back),
            "seconds": round(batch.seconds, 4),
        },
    )


def _finish(ctx: WorkerContext, batch: _Computed) -> dict[str, str]:
    jobs = {job.id: job for job in batch.claimed}
    with ctx.lifecycle.transaction() as unit:
        rows = write_outcomes(unit.conn, batch.outcomes)
        written = {job_id: row["status"] for job_id, row in rows.items()}
        if batch.handed_back:  # still `running`, its lease now short: the sweeper requeues it when it lapses
            retry = ctx.settings.transient_retry_seconds
            renew_leases(unit.conn, {job.id: job.attempt for job in batch.handed_back}, retry)
        unit.finished(
            [
                Change(
                    o.job_id,
                    jobs[o.job_id].analysis,
                    written[o.job_id],
                    attempt=o.attempt,
                    created_at=jobs[o.job_id].created_at,
                    error_code=o.error_code,
                    runtime=batch.seconds,
                    has_webhook=bool(jobs[o.job_id].webhook),
                    tenant=jobs[o.job_id].tenant,
                    document=job_document(rows[o.job_id]),
                    cdr=cdr_counts(o.result) if _family(ctx, jobs[o.job_id].analysis) == "tabular" else None,
                )
                for o in batch.outcomes
                if o.job_id in written
            ]
        )
    return written


def _claim(ctx: WorkerContext, wanted: list[str]) -> list[ClaimedJob]:
    """Claim a model batch (retried through a database restart) and start renewing its leases."""
    claimed = retry_while_unreachable(
        lambda: _claim_once(ctx, wanted), patience_seconds=ctx.settings.db_outage_patience_seconds, what="claim"
    )
    ctx.leases.hold({job.id: job.attempt for job in claimed})
    if len(claimed) < len(wanted):
        taken = {job.id for job in claimed}
        skipped = [job_id for job_id in wanted if job_id not in taken]
        log.info("already handled", extra={"job_ids": skipped})  # duplicate delivery, cancel, erasure
    return claimed


def _claim_once(ctx: WorkerContext, wanted: list[str]) -> list[ClaimedJob]:
    with ctx.lifecycle.transaction() as unit:
        claimed = claim_jobs(unit.conn, wanted, ctx.settings.lease_seconds)
        unit.started(
            [
                Change(
                    j.id,
                    j.analysis,
                    JobStatus.RUNNING,
                    attempt=j.attempt,
                    has_webhook=bool(j.webhook),
                    tenant=j.tenant,
                )
                for j in claimed
            ]
        )
    return claimed


def process_jobs(ctx: WorkerContext, job_ids: list[str]) -> BatchReport:
    """Run jobs in model batches: per batch one claim (inputs + lease), one model call, one write.

    Claiming batch by batch, one model call ahead, keeps each lease about two model calls long
    however many messages a flush delivered. No database connection is held while the model runs.
    Ids already running, finished or canceled are skipped by the claim. While the model runs batch
    k, one thread claims batch k+1 and another writes batch k-1 (and what follows it): the model
    waits for neither. At most one write is in flight, and all are done before this returns (so
    before the flush's messages are acknowledged). The first claim and the last write run in this
    thread: nothing would run beside them, and a lone job on an idle queue skips two thread hand-offs.
    """
    unique_ids = list(dict.fromkeys(job_ids))
    report = BatchReport(received=len(unique_ids))
    size = ctx.settings.max_batch_size
    chunks = [unique_ids[start : start + size] for start in range(0, len(unique_ids), size)]
    with (
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="assay-writer") as writer,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="assay-claimer") as claimer,
    ):
        pending: Future[None] | None = None
        upcoming: Future[tuple[list[ClaimedJob], float]] | None = None
        try:
            for index, chunk in enumerate(chunks):
                claimed, claim_seconds = upcoming.result() if upcoming is not None else _timed_claim(ctx, chunk)
                last = index + 1 == len(chunks)
                upcoming = None if last else claimer.submit(_timed_claim, ctx, chunks[index + 1])
                if not claimed:
                    continue
                report.claimed += len(claimed)
                report.model_batches.append(len(claimed))
                _observe_claimed(ctx, claimed)
                try:
                    began = time.perf_counter()
                    ran = run_batch(ctx, claimed)
                    timing = Timing(claim=claim_seconds, model=time.perf_counter() - began)
                    outcomes = annotate(ctx.settings, ctx.catalog, claimed, ran.outcomes, timing)
                    batch = _Computed(claimed, outcomes, timing.model, ran.handed_back)
                    ctx.leases.release([job.id for job in ran.handed_back])  # no renewal may undo the hand-back
                    if pending is not None:
                        pending, previous = None, pending
                        previous.result()  # one write in flight at most; re-raises its error here
                except BaseException:  # warm shutdown, a write that gave up: stop renewing, the sweeper takes over
                    ctx.leases.release([job.id for job in claimed])
                    raise
                family = Counter(_family(ctx, job.analysis) for job in claimed).most_common(1)[0][0]
                ctx.capacity.observe(family, len(claimed))
                if last:
                    _write(ctx, batch, report)
                else:
                    pending = writer.submit(_write, ctx, batch, report)
        finally:
            _release_unrun(ctx, upcoming)
        if pending is not None:
            pending.result()
    return report


def _timed_claim(ctx: WorkerContext, wanted: list[str]) -> tuple[list[ClaimedJob], float]:
    began = time.perf_counter()
    claimed = _claim(ctx, wanted)
    return claimed, time.perf_counter() - began


def _release_unrun(ctx: WorkerContext, upcoming: Future[tuple[list[ClaimedJob], float]] | None) -> None:
    """A batch claimed ahead that will not run here (the loop stopped): stop renewing its leases, so the
    sweeper hands its jobs on once they lapse."""
    if upcoming is None:
        return
    try:
        claimed, _ = upcoming.result()
    except BaseException:
        return
    ctx.leases.release([job.id for job in claimed])
