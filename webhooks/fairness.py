"""Fair shares between receivers: one slow or failing tenant receiver never holds back the others.

Each receiver (scheme, host and port) has a lane in this process: at most `limit` attempts in flight,
and behind them a short in-memory line of claimed events. An event joins the line only while the line
would be worked off within `line_seconds` at the receiver's recent pace (so a fast receiver's line can
hold hundreds, a 10 s receiver's only a few); past that it is deferred a moment instead, costing no
attempt, and goes back through PostgreSQL. The events waiting in a line hold no greenlet and no
connection, so a slow receiver occupies at most `limit` of the worker's attempts in flight.

After `failures` consecutive failed attempts a receiver's circuit opens: its events wait
`open_seconds` without being tried, then one attempt decides whether it closes again. The state is
per process, which is enough: each worker protects its own connections and greenlets.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar
from urllib.parse import urlsplit

#: How long an event whose receiver's line is full waits before it is offered again.
BUSY_DEFER_SECONDS = 1.0
#: Most events one receiver's line holds, however fast it answers.
MAX_LINE = 1000

Item = TypeVar("Item")


def receiver_of(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{parts.hostname}:{port}"


@dataclass(frozen=True)
class Offer:
    """What to do with an offered event: `run` it on a new runner, leave it `queued` (a runner of its lane
    takes it), or `defer` it by `seconds` without an attempt."""

    action: Literal["run", "queued", "defer"]
    seconds: float = 0.0


@dataclass
class _Lane(Generic[Item]):
    running: int = 0
    line: deque[Item] = field(default_factory=deque)
    pace: float = 0.0  # recent seconds per attempt (exponentially weighted); 0 until one ends
    failures: int = 0
    open_until: float = 0.0


class ReceiverLanes(Generic[Item]):
    """Thread- and greenlet-safe; one per webhook worker process."""

    def __init__(self, *, limit: int, failures: int, open_seconds: float, line_seconds: float = 10.0) -> None:
        self.limit = limit
        self.failures = failures
        self.open_seconds = open_seconds
        self.line_seconds = line_seconds
        self._lanes: dict[str, _Lane[Item]] = {}
        self._lock = threading.Lock()

    def offer(self, receiver: str, item: Item) -> Offer:
        """Admit an event: `run` means the caller starts a runner with it (and calls `next` when it is done)."""
        with self._lock:
            lane = self._lanes.setdefault(receiver, _Lane())
            paused = lane.open_until - time.monotonic()
            if paused > 0:
                return Offer("defer", paused)
            if lane.running < self.limit:
                lane.running += 1
                return Offer("run")
            waited = (len(lane.line) + 1) / self.limit * lane.pace
            if len(lane.line) >= MAX_LINE or waited > self.line_seconds:
                return Offer("defer", BUSY_DEFER_SECONDS)
            lane.line.append(item)
            return Offer("queued")

    def paused_for(self, receiver: str) -> float:
        """Seconds its circuit stays open (0 when closed)."""
        with self._lock:
            lane = self._lanes.get(receiver)
            return max(0.0, lane.open_until - time.monotonic()) if lane else 0.0

    def done(self, receiver: str, *, ok: bool, seconds: float) -> None:
        """An attempt ended: learn the pace, and count a failure towards the circuit."""
        with self._lock:
            lane = self._lanes.setdefault(receiver, _Lane())
            lane.pace = seconds if lane.pace == 0 else 0.8 * lane.pace + 0.2 * seconds
            lane.failures = 0 if ok else lane.failures + 1
            if lane.failures >= self.failures:
                lane.open_until = time.monotonic() + self.open_seconds
                lane.failures = self.failures - 1  # half-open: one more failure opens it again

    def next(self, receiver: str) -> Item | None:
        """The next event in the line for a runner that finished one; None ends the runner."""
        with self._lock:
            lane = self._lanes[receiver]
            if lane.line:
                return lane.line.popleft()
            lane.running -= 1
            return None

    def paused(self) -> list[str]:
        now = time.monotonic()
        with self._lock:
            return [name for name, lane in self._lanes.items() if lane.open_until > now]
