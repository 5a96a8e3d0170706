"""A real webhook receiver on loopback: verifies every request with standardwebhooks, answers per path.

Paths: /ok → 204, /redirect → 301, /hang → sleeps past the sender's timeout, /gone → 410,
/busy → 503 with Retry-After, /error → 500. Requests are recorded with the verification result.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: str
    valid: bool

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
        with self._lock:
            self.received.append(Received(path, headers, body, self.verify(body, headers)))
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
        else:
            response = Response(status=204)
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
