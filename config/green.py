"""psycopg2 under gevent: every wait on PostgreSQL's socket yields to the loop, and none lasts for ever.

Set up once per green process (the API's gunicorn workers, the webhook worker's gevent pool) before
its first connection. Here, beside the settings, so that both start-ups reach it without the worker
layer importing the store.
"""

from __future__ import annotations

from typing import Any

from config.settings import Settings

#: How much longer than statement_timeout one wait on PostgreSQL's socket may last before the server is
#: taken for gone.
ANSWER_MARGIN_SECONDS = 5.0


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
