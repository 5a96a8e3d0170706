"""A real webhook receiver on loopback: verifies every request with standardwebhooks, answers per path.

Paths: /ok → 204, /redirect → 301, /hang → sleeps past the sender's timeout, /gone → 410,
/busy → 503 with Retry-After, /error → 500, /flaky → 503 one time in ten, else 204. Hostile answers:
/endless → 200 with a body that never ends, /trickle → 200 with one byte every 5 s, /bomb → 200 with a
gzip body that inflates to 4 GiB, /retry-odd → 503 with `Retry-After: ²`, /retry-date → 503 with an HTTP
date 30 s ahead. Requests are recorded with the verification result and the status answered.
"""

from __future__ import annotations

import email.utils
import json
import random
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response


def _endless() -> Iterator[bytes]:
    chunk = b"x" * 65_536
    while True:
        yield chunk


def _trickle() -> Iterator[bytes]:
    while True:
        yield b"."
        time.sleep(5)


def _gzip_bomb(gib: int = 4) -> Iterator[bytes]:
    """A valid gzip stream of zeros, compressed as it is sent: ~4 MB on the wire, 4 GiB inflated."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(1 << 20)
    for _ in range(gib * 1024):
        if out := compressor.compress(zeros):
            yield out
    yield compressor.flush()


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: str
    valid: bool
    status: int = 0  # what the receiver answered (0 until it has)
    at: float = field(default_factory=time.monotonic)  # when it arrived

    @property
    def accepted(self) -> bool:
        """Answered 2xx: the sender may count it delivered."""
        return 200 <= self.status < 300

    @property
    def payload(self) -> dict[str, Any]:
        return json.loads(self.body)

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


@dataclass
class Receiver:
    port: int
    secrets: list[str] = field(default_factory=list)
    hang_seconds: float = 5.0
    received: list[Received] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def verify(self, body: str, headers: dict[str, str]) -> bool:
        for secret in self.secrets:
            try:
                Webhook(secret).verify(body, headers)
                return True
            except WebhookVerificationError:
                continue
        return False

    def _app(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        body = request.get_data(as_text=True)
        headers = {k.lower(): v for k, v in request.headers.items()}
        path = request.path.strip("/").split("/")[0]
        received = Received(path, headers, body, self.verify(body, headers))
        with self._lock:
            self.received.append(received)
        if path == "hang":
            time.sleep(self.hang_seconds)
            response = Response(status=204)
        elif path == "redirect":
            response = Response(status=301, headers={"Location": "http://127.0.0.1:9/elsewhere"})
        elif path == "gone":
            response = Response(status=410)
        elif path == "busy":
            response = Response(status=503, headers={"Retry-After": "3"})
        elif path == "error":
            response = Response("boom", status=500)
        elif path == "flaky":
            response = Response(status=503 if random.random() < 0.1 else 204)
        elif path == "endless":
            response = Response(_endless(), status=200, mimetype="application/octet-stream")
        elif path == "trickle":
            response = Response(_trickle(), status=200, mimetype="text/plain")
        elif path == "bomb":
            response = Response(_gzip_bomb(), status=200, headers={"Content-Encoding": "gzip"})
        elif path == "retry-odd":
            response = Response(status=503, headers={"Retry-After": "²"})
        elif path == "retry-date":
            when = email.utils.formatdate(time.time() + 30, usegmt=True)
            response = Response(status=503, headers={"Retry-After": when})
        else:
            response = Response(status=204)
        received.status = response.status_code
        return response(environ, start_response)

    def start(self) -> Receiver:
        self._server = make_server("127.0.0.1", self.port, self._app, threaded=True)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def of_type(self, event_type: str, path: str | None = None) -> list[Received]:
        with self._lock:
            return [
                r
                for r in self.received
                if r.headers.get("webhook-id")
                and r.payload.get("type") == event_type
                and (path is None or r.path == path)
            ]
