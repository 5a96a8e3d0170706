"""celery-batches, plus a flush as soon as the broker holds nothing more for this worker.

celery-batches flushes at `flush_every` messages or every `flush_interval`; a lone job on an idle
queue therefore waits the whole interval for company that is not coming. Here each message that does
not fill the batch is followed by one LLEN per queue this worker consumes: if they are all empty,
everything there is to batch is already in hand, and the batch runs now. A busy queue still fills whole
batches (there is always more waiting), and while a batch runs the next one gathers in Redis, so the
batch size follows the load by itself, as dynamic batching in an inference server does. If Redis
cannot be asked, the interval timer flushes as before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import redis
from celery import Celery
from celery_batches import Batches

from pipeline.context import get_context

log = logging.getLogger(__name__)


class EagerBatches(Batches):
    abstract = True

    def Strategy(self, task: Batches, app: Celery, consumer: Any) -> Callable[..., None]:  # noqa: N802 (Celery's name)
        handle = super().Strategy(task, app, consumer)
        queues: list[str] = []

        def nothing_waiting() -> bool:
            if not queues:
                queues.extend(queue.name for queue in consumer.task_consumer.queues)
            with get_context().redis.pipeline(transaction=False) as pipe:
                for name in queues:
                    pipe.llen(name)
                return not any(pipe.execute())

        def handle_then_flush_if_idle(*args: Any, **kwargs: Any) -> None:
            handle(*args, **kwargs)
            if self._buffer.empty():
                return  # the batch filled and flushed
            try:
                idle = nothing_waiting()
            except redis.RedisError:
                log.debug("queue length unavailable; the flush timer will run the batch", exc_info=True)
                return
            if idle:
                self._do_flush()

        return handle_then_flush_if_idle
