"""The recovery sweeper: PostgreSQL is the source of truth; broker messages are only hints."""

from __future__ import annotations

import logging

from celery import Celery

from config.celery import SWEEP_TASK
from store.jobs import sweep
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


def register_sweep(app: Celery) -> None:
    @app.task(name=SWEEP_TASK, bind=True, acks_late=False, ignore_result=True)
    def sweep_task(self) -> dict[str, int]:
        return sweep_once(self.app, get_context())
