"""Per-process worker resources, created lazily in the process that uses them (after any fork)."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import redis
from sqlalchemy import Engine

from broker.celery import make_celery
from broker.connection import redis_client
from broker.publish import Publisher
from config import Settings, get_settings
from config.catalog import AnalysisConfig, load_catalog
from models.base import Engines
from pipeline.capacity import CapacityMeter
from pipeline.leases import LeaseKeeper
from pipeline.lifecycle import Lifecycle
from store.db import make_engine


@dataclass
class WorkerContext:
    settings: Settings
    db: Engine
    redis: redis.Redis
    catalog: dict[str, AnalysisConfig]
    lifecycle: Lifecycle
    _engines: Engines | None = field(default=None, repr=False)
    _leases: LeaseKeeper | None = field(default=None, repr=False)
    _capacity: CapacityMeter | None = field(default=None, repr=False)

    @property
    def leases(self) -> LeaseKeeper:
        """Renews the leases of the jobs this process runs (started with the first batch)."""
        if self._leases is None:
            self._leases = LeaseKeeper(self.db, self.settings.lease_seconds, self.settings.max_run_seconds)
        return self._leases

    @property
    def capacity(self) -> CapacityMeter:
        """What this worker sustains when busy, reported for the API's admission."""
        if self._capacity is None:
            self._capacity = CapacityMeter(self.redis, self.settings)
        return self._capacity

    @property
    def engines(self) -> Engines:
        """The models, built on first use (inference workers preload them at start)."""
        if self._engines is None:
            from models.registry import EngineRegistry

            self._engines = EngineRegistry(self.settings, self.catalog)
        return self._engines


def build_context(settings: Settings, publisher: Publisher | None = None) -> WorkerContext:
    """A context on its own connections."""
    db = make_engine(settings, pool_size=2)
    client = redis_client(settings)
    catalog = load_catalog()
    publisher = publisher or Publisher(client, settings, catalog, make_celery(settings))
    return WorkerContext(settings, db, client, catalog, Lifecycle(settings, db, client, publisher))


@functools.cache
def get_context() -> WorkerContext:
    """The process-wide worker context, made on first use."""
    return build_context(get_settings())
