"""Gunicorn's gevent worker, with the errors gunicorn answers itself in the API's one JSON error shape.

Some requests never reach the app: a request line past `limit_request_line` (414), headers past
`limit_request_field_size` or `limit_request_fields` (431), a request gunicorn cannot parse (400), an
`Expect` it does not support (417), a transfer coding it does not know (501). Gunicorn wrote those as an
HTML page, and a client reading `{"error": {...}}` got markup. Same statuses, same log lines; only the
body changes.
"""

from __future__ import annotations

import json
import socket

from gunicorn import util
from gunicorn.workers.base_async import AsyncWorker
from gunicorn.workers.ggevent import GeventWorker

#: The error code of each status gunicorn answers itself (README's Errors table lists them).
GUNICORN_ERROR_CODES = {
    400: "bad_request",
    403: "forbidden",
    414: "uri_too_long",
    417: "expectation_failed",
    431: "headers_too_large",
    500: "internal_error",
    501: "not_implemented",
}


def json_error_bytes(status: int, reason: str, message: str) -> bytes:
    """The whole HTTP response gunicorn sends for `status`, with a JSON body; the connection closes after it."""
    code = GUNICORN_ERROR_CODES.get(status, "http_error")
    body = json.dumps({"error": {"code": code, "message": message or reason, "details": None}}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


def write_json_error(sock: socket.socket, status_int: int, reason: str, mesg: str) -> None:
    """`gunicorn.util.write_error`'s signature, writing JSON instead of HTML."""
    util.write_nonblock(sock, json_error_bytes(status_int, reason, mesg))


class JsonErrorGeventWorker(GeventWorker):
    """`worker_class` in gunicorn.conf.py.

    Errors: `handle_error` builds its status and message, then calls `util.write_error`; replacing that one
    function, in the worker process only, changes the body and keeps gunicorn's own choice of status, its
    logging and its access-log line.

    Stopping: whatever stops the worker (SIGTERM, a reload's, `max_requests`) clears `alive`; a greenlet
    watching it tells app.draining, so event streams end at once instead of holding the worker for the
    graceful timeout."""

    def init_process(self) -> None:
        from config import get_settings

        util.write_error = write_json_error
        # Past `keepalive`, so that an idle keep-alive connection is closed by gunicorn's own timer (quietly),
        # never by the socket's (a "Socket error" traceback in the log).
        self.read_timeout = max(get_settings().api_read_timeout_seconds, self.cfg.keepalive + 1)
        super().init_process()

    def handle(self, listener: socket.socket, client: socket.socket, addr: object) -> None:
        """A socket timeout on every connection: a client that stalls mid-body (headers sent, then nothing, a
        slowloris) held its greenlet and one of `worker_connections` forever; it now gets a 408 once nothing
        has arrived for `ASSAY_API_READ_TIMEOUT_SECONDS`, at least `keepalive` + 1 (app.spool_upload.BodyTimeoutError).
        The headers are bounded already, by `keepalive`. GeventWorker.handle's one line (`setblocking(1)`) would
        clear the timeout."""
        client.settimeout(self.read_timeout)
        AsyncWorker.handle(self, listener, client, addr)

    def run(self) -> None:
        import gevent

        gevent.spawn(self._tell_when_stopping)
        super().run()

    def _tell_when_stopping(self) -> None:
        import gevent

        from app import draining

        while self.alive:
            gevent.sleep(0.25)
        draining.begin()
