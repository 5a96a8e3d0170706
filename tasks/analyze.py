"""The batched analysis task: celery-batches hands it every message of a flush at once (tasks.eager_batches)."""

from __future__ import annotations

from typing import Any

from celery import Celery

from config import Settings
from config.celeryconf import ANALYZE_TASK
from config.logging import bound
from pipeline.batch import process_jobs
from pipeline.context import get_context
from tasks.eager_batches import EagerBatches


def register_analyze(app: Celery, settings: Settings) -> None:
    """Register the batch consumer with this deployment's batch size and wait."""

    @app.task(
        name=ANALYZE_TASK,
        base=EagerBatches,
        bind=True,
        flush_every=settings.max_batch_size,
        flush_interval=settings.max_batch_wait_ms / 1000,
        acks_late=True,
        ignore_result=True,
    )
    def analyze(self: Any, requests: list[Any]) -> None:
        job_ids = [job_id for request in requests for job_id in (request.args[0] if request.args else [])]
        with bound(messages=len(requests)):
            process_jobs(get_context(), job_ids)
