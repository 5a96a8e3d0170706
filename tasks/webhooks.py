"""The webhook delivery task: runs on its own queue and gevent-pool worker, never on an inference worker,
so a receiver that hangs cannot stall a model (replicate/cog#2229).
"""

from __future__ import annotations

from celery import Celery

from config.celeryconf import DELIVER_TASK
from pipeline.context import get_context
from pipeline.deliveries import deliver_batch, deliverer


def register_webhooks(app: Celery) -> None:
    @app.task(name=DELIVER_TASK, acks_late=True, ignore_result=True)
    def deliver_task(event_ids: list[str] | str) -> dict[str, int]:
        """A batch of event ids (a single id from an older publisher is a batch of one)."""
        ctx = get_context()
        ids = [event_ids] if isinstance(event_ids, str) else list(event_ids)
        return dict(deliver_batch(ctx, deliverer(ctx.settings), ids))
