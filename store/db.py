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

#: libpq's TCP settings: a server that went silent (a partition, a host gone) is noticed in about a minute.
TCP_LIVENESS = {
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "tcp_user_timeout": 60_000,
}


def make_engine(settings: Settings, *, pool_size: int | None = None) -> Engine:
    """A pooled engine; statement_timeout bounds every query so nothing hangs a worker forever.

    `hide_parameters`: an error's message and log line show the SQL, never the values bound to it
    (users' texts, metadata, results).

    TCP keepalives and `tcp_user_timeout`: statement_timeout is enforced by the server, so behind a
    partition that drops packets a blocking process (the inference worker, the sweeper) waited on its
    socket for TCP's own retransmission limit, ~15 minutes. Now a connection whose server has gone silent
    is dropped within about a minute (an idle one: 30 s, then 3 probes 10 s apart; one with a request
    unacknowledged: 60 s), and the worker's retry-while-unreachable path takes over. The gevent processes
    also bound each wait themselves (config.green). libpq ignores these on Unix sockets.

    `idle_in_transaction_session_timeout` (the statement timeout again): a process frozen inside a
    transaction (SIGSTOP, a paused VM, a partition the server has not noticed) held its rows locked for as
    long as it was gone, and every sweep skipped them (SKIP LOCKED), so its jobs stayed `running` long past
    their lease. The server now ends such a session, its locks go, and the sweeper hands the jobs on. No
    transaction here waits on anything but PostgreSQL between its statements.
    """
    return create_engine(
        settings.database_url,
        hide_parameters=True,
        pool_size=pool_size or settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        pool_pre_ping=settings.db_pool_pre_ping,
        pool_recycle=1800,
        connect_args={
            "options": (
                f"-c statement_timeout={settings.db_statement_timeout_ms}"
                f" -c idle_in_transaction_session_timeout={settings.db_statement_timeout_ms}"
            ),
            "connect_timeout": 5,
            "application_name": "assay",
            **TCP_LIVENESS,
        },
    )


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
