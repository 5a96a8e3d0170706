"""Celery entry point: `celery -A workers.celery_app worker ...`."""

from config import get_settings
from tasks.celery import create_celery
from workers.bootstrap import install

app = create_celery(get_settings(), with_tasks=True)
install(app)
