"""The API process's connections and collaborators, made once per app (per gunicorn worker, after fork)."""

from __future__ import annotations

from dataclasses import dataclass, field

import redis
from flask import current_app
from sqlalchemy import Engine

from app.group_commit import GroupCommit
from broker.celery import make_celery
from broker.connection import redis_client
from broker.publish import Publisher
from config import Settings
from config.catalog import AnalysisConfig, load_catalog
from pipeline.lifecycle import Lifecycle
from store.db import make_engine
from store.secrets_box import SecretBox


@dataclass
class Resources:
    settings: Settings
    db: Engine
    redis: redis.Redis
    catalog: dict[str, AnalysisConfig]
    lifecycle: Lifecycle
    group_commit: GroupCommit | None = None  # made by app/jobs_api.py on the first submission
    _box: SecretBox | None = field(default=None, repr=False)

    @property
    def secret_box(self) -> SecretBox:
        """Encrypts webhook signing secrets; SecretsKeyError (a 503 naming the setting) without keys."""
        if self._box is None:
            self._box = SecretBox(self.settings.secrets_key_list)
        return self._box

    @classmethod
    def from_settings(cls, settings: Settings) -> Resources:
        db = make_engine(settings)
        client = redis_client(settings)
        catalog = load_catalog()
        publisher = Publisher(client, settings, catalog, make_celery(settings))
        return cls(settings, db, client, catalog, Lifecycle(settings, db, client, publisher))


def resources() -> Resources:
    return current_app.extensions["assay"]
