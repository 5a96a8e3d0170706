"""The Celery application, configured from Settings: the API uses it to publish, workers to consume.

Task bodies are registered separately (tasks.register_tasks), so publishing needs none of them.
"""

from __future__ import annotations

from celery import Celery

from config import Settings
from config.celeryconf import celery_config


def make_celery(settings: Settings) -> Celery:
    """A Celery app bound to this settings object, with no tasks registered and not made current."""
    app = Celery("assay", set_as_current=False)
    app.conf.update(celery_config(settings))
    return app
