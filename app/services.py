"""The API process's connections, made once per app (per gunicorn worker, after fork)."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from celery import Celery
from flask import current_app
from sqlalchemy import Engine

from config import Settings
from config.analyses import AnalysisConfig, load_catalog
from store.db import make_engine
from tasks.celery import create_celery


@dataclass
class Services:
    settings: Settings
    db: Engine
    redis: redis.Redis
    celery: Celery
    catalog: dict[str, AnalysisConfig]

    @classmethod
    def from_settings(cls, settings: Settings) -> Services:
        return cls(
            settings=settings,
            db=make_engine(settings),
            redis=redis.Redis.from_url(
                settings.redis_url, socket_timeout=5, socket_connect_timeout=2, health_check_interval=30
            ),
            celery=create_celery(settings),
            catalog=load_catalog(),
        )


def services() -> Services:
    return current_app.extensions["assay"]
