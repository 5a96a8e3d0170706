"""Engine and session factory. One engine per process, created after fork, never at import."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, create_engine

from config import Settings


def make_engine(settings: Settings, *, pool_size: int | None = None) -> Engine:
    """A pooled engine; statement_timeout bounds every query so nothing hangs a worker forever."""
    return create_engine(
        settings.database_url,
        pool_size=pool_size or settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={
            "options": f"-c statement_timeout={settings.db_statement_timeout_ms}",
            "connect_timeout": 5,
            "application_name": "assay",
        },
    )


@contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    """A connection inside one transaction, committed on success and returned to the pool at once."""
    with engine.begin() as conn:
        yield conn
