"""The maintenance worker's periodic tasks (run by the beat embedded in it): sweeps and retention."""

from __future__ import annotations

from celery import Celery

from config.celeryconf import RETENTION_TASK, SWEEP_TASK, UPLOADS_SWEEP_TASK, WEBHOOK_SWEEP_TASK
from pipeline.context import get_context
from pipeline.deliveries import sweep_webhooks
from pipeline.recovery import retention_once, sweep_once
from pipeline.uploads import sweep_uploads


def register_maintenance(app: Celery) -> None:
    @app.task(name=SWEEP_TASK, acks_late=False, ignore_result=True)
    def sweep_task() -> dict[str, int]:
        return sweep_once(get_context())

    @app.task(name=RETENTION_TASK, acks_late=False, ignore_result=True)
    def retention_task() -> int:
        return retention_once(get_context())

    @app.task(name=WEBHOOK_SWEEP_TASK, acks_late=False, ignore_result=True)
    def webhook_sweep_task() -> int:
        return sweep_webhooks(get_context())

    @app.task(name=UPLOADS_SWEEP_TASK, acks_late=False, ignore_result=True)
    def uploads_sweep_task() -> int:
        return sweep_uploads(get_context())
