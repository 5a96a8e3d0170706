"""Publishing to the broker: job ids for the inference workers, event ids for the webhook workers.

Called only after the rows are committed (pipeline.lifecycle), so a worker always finds what a
message names. Messages carry ids only: inputs stay in PostgreSQL.

Every push also reads the **broker epoch**: a random token kept in Redis under `<prefix>:broker-epoch`,
created by whoever first finds it missing. Redis loses it together with every queued message (a
restart without persistence, a flush, a new server), so PostgreSQL records the epoch each job and
event was published under, and the sweepers re-publish exactly those whose epoch is not the current
one — never a message that is still waiting (see docs/DESIGN.md, "Re-publish only what was lost").
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import redis
from celery import Celery
from redis.client import Pipeline

from broker.messages import task_message
from config import Settings
from config.catalog import AnalysisConfig
from config.celeryconf import ANALYZE_TASK, DELIVER_TASK


def queue_for(settings: Settings, catalog: dict[str, AnalysisConfig], analysis: str) -> str:
    """The queue of an analysis' model family, e.g. `assay.text`."""
    return settings.queue_name(catalog[analysis].family)


@dataclass(frozen=True)
class Published:
    epoch: str  # the broker epoch the messages went out under
    messages: int


class Publisher:
    """One per process; thread- and greenlet-safe (redis-py takes a pooled connection per call).

    `known_epoch` is the epoch of the last push: callers stamp rows with it before committing, and
    fix the rows only in the rare case the push reports another one (Redis restarted meanwhile).
    """

    def __init__(
        self, client: redis.Redis, settings: Settings, catalog: dict[str, AnalysisConfig], app: Celery
    ) -> None:
        self.client = client
        self.settings = settings
        self.catalog = catalog
        self.app = app  # builds task messages only: it never opens a connection here
        self.epoch_key = f"{settings.queue_prefix}:broker-epoch"
        self.known_epoch: str | None = None

    def current_epoch(self) -> str:
        """The broker's epoch now (created if Redis has none)."""
        return self._push([])

    def jobs(self, jobs: Iterable[tuple[str, str]], *, before: Callable[[Pipeline], None] | None = None) -> Published:
        """Send (job_id, analysis) pairs: one message per `publish_chunk_size` ids, one queue per family.

        A single job travels as its own message whose Celery task id is the job id, so Flower and
        logs name it. `before` queues other commands to run first in the same round trip (the jobs'
        `created` events, so a tenant's stream never tells of a job starting before it was created).
        """
        by_queue: dict[str, list[str]] = defaultdict(list)
        for job_id, analysis in jobs:
            by_queue[queue_for(self.settings, self.catalog, analysis)].append(job_id)
        size = self.settings.publish_chunk_size
        messages = [
            (queue, task_message(self.app, ANALYZE_TASK, [chunk], queue, chunk[0] if len(chunk) == 1 else None))
            for queue, ids in by_queue.items()
            for chunk in (ids[start : start + size] for start in range(0, len(ids), size))
        ]
        return Published(self._push(messages, before), len(messages))

    def deliveries(self, event_ids: list[str]) -> Published:
        """Hand webhook events to the webhook workers, `webhook_publish_chunk_size` ids per message: a
        worker claims and records a whole message's events in two statements."""
        queue = self.settings.webhook_queue
        size = self.settings.webhook_publish_chunk_size
        messages = [
            (queue, task_message(self.app, DELIVER_TASK, [event_ids[start : start + size]], queue))
            for start in range(0, len(event_ids), size)
        ]
        return Published(self._push(messages), len(messages))

    def _push(self, messages: list[tuple[str, bytes]], before: Callable[[Pipeline], None] | None = None) -> str:
        """One MULTI/EXEC: make sure an epoch exists, read it, push every message (FIFO per queue), and
        count the messages per queue (`<prefix>:published:<queue>`, what the benchmarks read)."""
        pipe = self.client.pipeline(transaction=True)
        pipe.set(self.epoch_key, secrets.token_hex(8), nx=True)
        pipe.get(self.epoch_key)
        if before is not None:
            before(pipe)
        by_queue: dict[str, list[bytes]] = defaultdict(list)
        for queue, message in messages:
            by_queue[queue].append(message)
        for queue, bodies in by_queue.items():
            pipe.lpush(queue, *bodies)
            pipe.incrby(f"{self.settings.queue_prefix}:published:{queue}", len(bodies))
        epoch = pipe.execute()[1]
        self.known_epoch = epoch.decode() if isinstance(epoch, bytes) else str(epoch)
        return self.known_epoch
