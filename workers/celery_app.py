"""Celery entry point: `celery -A workers.celery_app worker ...`."""

from broker.celery import make_celery
from config import get_settings
from tasks import register_tasks
from workers.bootstrap import install

app = make_celery(get_settings())
app.set_current()
register_tasks(app, get_settings())
install(app)
