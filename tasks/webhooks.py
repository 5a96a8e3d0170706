"""The webhook delivery task: runs on its own queue and gevent-pool worker, never on an inference worker,
so a receiver that hangs cannot stall a model (replicate/cog#2229).
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import worker_shutdown

from config.celeryconf import DELIVER_TASK
from pipeline.context import get_context
from pipeline.deliveries import deliver_batch, deliverer, drain_all


def register_webhooks(app: Celery) -> None:
    @app.task(name=DELIVER_TASK, acks_late=True, ignore_result=True)
    def deliver_task(event_ids: list[str] | str) -> dict[str, int]:
        """A batch of event ids (a single id from an older publisher is a batch of one). Returns once every
        event is handed out; the claim's lock, not this message, keeps an event safe from here on."""
        ctx = get_context()
        ids = [event_ids] if isinstance(event_ids, str) else list(event_ids)
        return dict(deliver_batch(ctx, deliverer(ctx), ids))

    @worker_shutdown.connect(weak=False)
    def finish_attempts(**_: Any) -> None:
        drain_all()
