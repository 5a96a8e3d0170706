"""Fair shares between receivers: one slow or failing tenant receiver never holds back the others.

Per receiver (scheme, host and port), at most `limit` attempts are in flight in this process. An event
for a receiver at its limit waits for a slot up to `wait_seconds` (a fast receiver frees one in
milliseconds); if none frees, it is deferred a moment instead of tried, costing no attempt, so a slow
receiver never holds a whole batch. After `failures` consecutive failed attempts a receiver's circuit
opens: its events wait `open_seconds` without being tried, then one attempt decides whether it closes
again. The state is per process, which is enough: each worker protects its own connections and
greenlets.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

#: How long an event whose receiver stayed at its concurrency limit waits before it is offered again.
BUSY_DEFER_SECONDS = 1.0


def receiver_of(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{parts.hostname}:{port}"


@dataclass
class _Receiver:
    slots: threading.BoundedSemaphore
    failures: int = 0
    open_until: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


class ReceiverGate:
    def __init__(self, *, limit: int, failures: int, open_seconds: float, wait_seconds: float = 1.0) -> None:
        self.limit = limit
        self.failures = failures
        self.open_seconds = open_seconds
        self.wait_seconds = wait_seconds
        self._receivers: dict[str, _Receiver] = {}
        self._lock = threading.Lock()

    def _state(self, receiver: str) -> _Receiver:
        with self._lock:
            if receiver not in self._receivers:
                self._receivers[receiver] = _Receiver(threading.BoundedSemaphore(self.limit))
            return self._receivers[receiver]

    def enter(self, receiver: str) -> float | None:
        """None: go ahead (call `leave` after); otherwise the seconds to defer this event by."""
        state = self._state(receiver)
        paused = state.open_until - time.monotonic()
        if paused > 0:
            return paused
        if not state.slots.acquire(timeout=self.wait_seconds):
            return BUSY_DEFER_SECONDS
        return None

    def leave(self, receiver: str, *, ok: bool) -> None:
        state = self._state(receiver)
        state.slots.release()
        with state.lock:
            state.failures = 0 if ok else state.failures + 1
            if state.failures >= self.failures:
                state.open_until = time.monotonic() + self.open_seconds
                state.failures = self.failures - 1  # half-open: one more failure opens it again

    def paused(self) -> list[str]:
        now = time.monotonic()
        with self._lock:
            return [name for name, state in self._receivers.items() if state.open_until > now]
