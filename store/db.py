"""Engine and session factory. One engine per process, created after fork, never at import."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, func
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from config import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

#: How much longer than statement_timeout one wait on PostgreSQL's socket may last before the server is
#: taken for gone (green processes: see `green_psycopg`).
ANSWER_MARGIN_SECONDS = 5.0


def make_engine(settings: Settings, *, pool_size: int | None = None) -> Engine:
    """A pooled engine; statement_timeout bounds every query so nothing hangs a worker forever.

    `hide_parameters`: an error's message and log line show the SQL, never the values bound to it
    (users' texts, metadata, results).
    """
    return create_engine(
        settings.database_url,
        hide_parameters=True,
        pool_size=pool_size or settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        pool_pre_ping=settings.db_pool_pre_ping,
        pool_recycle=1800,
        connect_args={
            "options": f"-c statement_timeout={settings.db_statement_timeout_ms}",
            "connect_timeout": 5,
            "application_name": "assay",
        },
    )


def green_psycopg(settings: Settings) -> None:
    """Make psycopg2 yield to gevent while it waits (psycogreen's wait callback), each wait bounded.

    statement_timeout is enforced by the server, so a server that stops answering (frozen, or behind a
    partition that drops packets) never sends it: every request of an API process waited for as long as
    the server was gone (a 25 s freeze: 25 s for each, `?wait=5` included; a partition: TCP's minutes).
    A wait longer than the statement timeout plus a margin raises OperationalError instead; psycopg2
    closes the connection on any error of its wait callback, so the pool drops it, the API answers 503
    `database_unavailable`, and a later checkout connects afresh. Connecting is bounded the same way, so
    a request waits twice the bound at most (the pooled connection's pre-ping, then a fresh connect).
    """
    import psycopg2
    from gevent.socket import wait_read, wait_write
    from psycopg2 import extensions

    limit = settings.db_statement_timeout_ms / 1000 + ANSWER_MARGIN_SECONDS

    def wait(conn: Any, timeout: float | None = None) -> None:
        while True:
            state = conn.poll()
            if state == extensions.POLL_OK:
                return
            try:
                if state == extensions.POLL_READ:
                    wait_read(conn.fileno(), timeout=limit)
                elif state == extensions.POLL_WRITE:
                    wait_write(conn.fileno(), timeout=limit)
                else:
                    raise psycopg2.OperationalError(f"bad result from poll: {state!r}")
            except TimeoutError:
                raise psycopg2.OperationalError(f"PostgreSQL did not answer within {limit:g} s") from None

    extensions.set_wait_callback(wait)


def interval(seconds: float) -> Any:
    """A PostgreSQL interval of `seconds`, for `now() + interval(...)` in queries."""
    return func.make_interval(0, 0, 0, 0, 0, 0, seconds)


def unreachable(exc: BaseException) -> bool:
    """True for errors that mean PostgreSQL could not be reached or dropped the connection (an outage,
    a restart, a failover), as opposed to a statement PostgreSQL refused."""
    return isinstance(exc, (OperationalError, InterfaceError)) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    )


def retry_while_unreachable(work: Callable[[], T], *, patience_seconds: float, what: str) -> T:
    """Run `work`, retrying with backoff while PostgreSQL is unreachable, for up to `patience_seconds`.

    For workers: a batch whose claim or write meets a database restart waits for it rather than
    failing jobs or dropping the messages that carry them. Statement errors are not retried.
    """
    deadline = time.monotonic() + patience_seconds
    delay = 0.25
    while True:
        try:
            return work()
        except Exception as exc:
            if not unreachable(exc) or time.monotonic() + delay > deadline:
                raise
            log.warning("PostgreSQL unreachable; retrying", extra={"step": what, "retry_in": delay})
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
