"""The Celery application factory, shared by the API (to publish) and the workers (to consume)."""

from __future__ import annotations

from celery import Celery

from config import Settings
from config.celery import celery_config


def create_celery(settings: Settings, *, with_tasks: bool = False) -> Celery:
    """A Celery app bound to this settings object; `with_tasks` registers the task bodies."""
    app = Celery("assay", set_as_current=True)
    app.conf.update(celery_config(settings))
    if with_tasks:
        from tasks.analyze import register_analyze
        from tasks.sweep import register_sweep
        from tasks.webhooks import register_webhooks

        register_analyze(app, settings)
        register_sweep(app)
        register_webhooks(app)
    return app
