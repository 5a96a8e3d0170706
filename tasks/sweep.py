"""The recovery sweeper: PostgreSQL is the source of truth; broker messages are only hints."""

from __future__ import annotations

import logging

from celery import Celery

from config.celery import RETENTION_TASK, SWEEP_TASK
from store.jobs import expire_jobs, sweep
from store.notify import notify_finished
from store.webhooks import create_events
from tasks import metrics
from tasks.context import WorkerContext, get_context
from tasks.dispatch import publish_jobs
from tasks.webhooks import publish_or_defer

log = logging.getLogger(__name__)


def sweep_once(app: Celery, ctx: WorkerContext) -> dict[str, int]:
    """Re-publish lost or abandoned jobs and fail those out of attempts; returns counts."""
    s = ctx.settings
    with ctx.db.begin() as conn:
        found = sweep(
            conn, requeue_after_seconds=s.requeue_after_seconds, max_attempts=s.max_attempts, limit=s.sweep_limit
        )
        failed_events = create_events(conn, [job_id for job_id, _ in found.exhausted], s.webhook_publish_grace_seconds)
    publish_or_defer(app, s, failed_events)
    # Publish after commit: a worker must find the row `queued` when the message arrives.
    known = [(job_id, analysis) for job_id, analysis in found.republish if analysis in ctx.catalog]
    if known:
        publish_jobs(app, s, known)
    if found.exhausted:
        notify_finished(ctx.redis, [job_id for job_id, _ in found.exhausted])
        for _, analysis in found.exhausted:
            metrics.JOBS_FINISHED.labels(analysis, "failed").inc()
    counts = {"republished": len(known), "exhausted": len(found.exhausted)}
    if known or found.exhausted:
        log.info("sweep", extra=counts)
    return counts


def retention_once(ctx: WorkerContext) -> int:
    """Erase finished jobs older than ASSAY_RETENTION_DAYS, chunk by chunk, each chunk its own transaction."""
    s = ctx.settings
    if not s.retention_days:
        return 0
    erased = 0
    while True:
        with ctx.db.begin() as conn:
            ids = expire_jobs(conn, s.retention_days * 86_400, s.retention_chunk)
        erased += len(ids)
        if len(ids) < s.retention_chunk:
            break
    if erased:
        log.info("retention", extra={"erased": erased, "days": s.retention_days})
    return erased


def register_sweep(app: Celery) -> None:
    @app.task(name=SWEEP_TASK, bind=True, acks_late=False, ignore_result=True)
    def sweep_task(self) -> dict[str, int]:
        return sweep_once(self.app, get_context())

    @app.task(name=RETENTION_TASK, acks_late=False, ignore_result=True)
    def retention_task() -> int:
        return retention_once(get_context())
