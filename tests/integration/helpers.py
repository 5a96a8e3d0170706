"""Database-side waits shared by the integration tests."""

from __future__ import annotations

import base64
import json
from collections import Counter
from typing import TYPE_CHECKING

import redis
from sqlalchemy import Engine, select

from config.settings import Settings
from store.tables import jobs
from tests.support import wait_for

if TYPE_CHECKING:
    from pipeline.context import WorkerContext

FINAL = ("succeeded", "failed", "canceled")


def statuses(db: Engine, ids: list[str]) -> dict[str, str]:
    with db.connect() as conn:
        return dict(conn.execute(select(jobs.c.id, jobs.c.status).where(jobs.c.id.in_(ids))).all())


def status_counts(db: Engine, ids: list[str]) -> Counter[str]:
    return Counter(statuses(db, ids).values())


def attempts(db: Engine, ids: list[str]) -> dict[str, int]:
    with db.connect() as conn:
        return dict(conn.execute(select(jobs.c.id, jobs.c.attempts).where(jobs.c.id.in_(ids))).all())


def wait_all_final(db: Engine, ids: list[str], timeout: float) -> dict[str, str]:
    """Poll PostgreSQL (cheaper than hundreds of GETs) until every job is final; {id: status}."""

    def done() -> dict[str, str] | None:
        found = statuses(db, ids)
        return found if len(found) == len(ids) and all(s in FINAL for s in found.values()) else None

    return wait_for(done, timeout, interval=0.3, what=f"{len(ids)} jobs to finish")


def worker_context(settings: Settings, db: Engine, client: redis.Redis) -> WorkerContext:
    """A worker's context on the session's database and Redis, publishing to the real broker."""
    from broker.celery import make_celery
    from broker.publish import Publisher
    from config.catalog import load_catalog
    from pipeline.context import WorkerContext
    from pipeline.lifecycle import Lifecycle

    catalog = load_catalog()
    publisher = Publisher(client, settings, catalog, make_celery(settings))
    return WorkerContext(settings, db, client, catalog, Lifecycle(settings, db, client, publisher))


def queued_task_args(client: redis.Redis, queue: str) -> list[list]:
    """The first positional argument of every task message waiting in a Redis queue (kombu's JSON envelope)."""
    found = []
    for raw in client.lrange(queue, 0, -1):
        envelope = json.loads(raw)
        args, _kwargs, _embed = json.loads(base64.b64decode(envelope["body"]))
        found.append(args[0])
    return found
