"""Celery task bodies, thin: ids in, a pipeline function does the work. Importing this loads no model."""

from __future__ import annotations

from celery import Celery

from config import Settings


def register_tasks(app: Celery, settings: Settings) -> None:
    """Register every task body on a worker's app."""
    from tasks.analyze import register_analyze
    from tasks.maintenance import register_maintenance
    from tasks.webhooks import register_webhooks

    register_analyze(app, settings)
    register_maintenance(app)
    register_webhooks(app)
