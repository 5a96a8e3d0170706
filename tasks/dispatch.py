"""Publishing job ids to the broker. Called only after the job rows are committed."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from celery import Celery

from config import Settings
from config.analyses import load_catalog
from config.celery import ANALYZE_TASK


def queue_for(settings: Settings, analysis: str) -> str:
    return settings.queue_name(load_catalog()[analysis].family)


def publish_jobs(app: Celery, settings: Settings, jobs: Iterable[tuple[str, str]]) -> int:
    """Send (job_id, analysis) pairs; returns the number of messages sent.

    A single job travels as its own message whose Celery task id is the job id (so Flower and
    logs name it); larger sets go in chunks of `publish_chunk_size` ids per message, one queue
    per model family. Messages carry ids only: inputs stay in PostgreSQL.
    """
    by_queue: dict[str, list[str]] = defaultdict(list)
    for job_id, analysis in jobs:
        by_queue[queue_for(settings, analysis)].append(job_id)
    sent = 0
    with app.producer_or_acquire() as producer:
        for queue, ids in by_queue.items():
            size = settings.publish_chunk_size
            for start in range(0, len(ids), size):
                chunk = ids[start : start + size]
                task_id = chunk[0] if len(chunk) == 1 else None
                app.send_task(ANALYZE_TASK, args=[chunk], queue=queue, task_id=task_id, producer=producer)
                sent += 1
    return sent
