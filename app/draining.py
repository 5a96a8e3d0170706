"""A stopping API worker asks its long-lived responses to end, so that it is not held until the graceful
timeout.

A gunicorn worker that stops (a reload, `max_requests` recycling, a rolling deploy's SIGTERM) closes its
listener and waits for open requests to end, for up to `graceful_timeout` (30 s), then cuts them. An
event stream never ends on its own (1 h): every reload and recycle waited the full 30 s, the master
handled no other signal meanwhile, and each stream was then cut mid-response. Told here, a stream ends
cleanly at once and its client reconnects, with Last-Event-ID, to a worker that is not stopping.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

_stopping = threading.Event()
_on_stop: list[Callable[[], None]] = []


def stopping() -> bool:
    return _stopping.is_set()


def on_stop(callback: Callable[[], None]) -> None:
    """Run `callback` when this process starts to stop (at once if it already has)."""
    _on_stop.append(callback)
    if _stopping.is_set():
        callback()


def begin() -> None:
    """This process is stopping: tell whoever asked. Called by the gunicorn worker (app.gunicorn_worker)."""
    if _stopping.is_set():
        return
    _stopping.set()
    for callback in list(_on_stop):
        try:
            callback()
        except Exception:
            log.warning("a stop callback failed", exc_info=True)
