"""Per-process worker resources, created lazily in the process that uses them (after any fork)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import redis
from sqlalchemy import Engine

from config import Settings, get_settings
from config.analyses import AnalysisConfig, load_catalog
from store.db import make_engine


@dataclass
class WorkerContext:
    settings: Settings
    db: Engine
    redis: redis.Redis
    catalog: dict[str, AnalysisConfig]
    _registry: object | None = None

    @property
    def registry(self):
        if self._registry is None:
            from models.registry import EngineRegistry

            self._registry = EngineRegistry(self.settings, self.catalog)
        return self._registry


@functools.cache
def get_context() -> WorkerContext:
    settings = get_settings()
    return WorkerContext(
        settings=settings,
        db=make_engine(settings, pool_size=2),
        redis=redis.Redis.from_url(settings.redis_url),
        catalog=load_catalog(),
    )
