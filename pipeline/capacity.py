"""The worker's side of admission by expected wait: how many jobs per second it sustains when busy.

The pace is jobs per second of *wall-clock* time between consecutive model batches, so it holds
everything a busy worker spends per batch: the claim, the model, the wait for the previous write, the
batch consumer's flush and acks, and whatever the machine's other processes take from it (timing only
the model overstated a CPU worker's pace by ~40 % under load). Only batches at least half as large as
`max_batch_size` that follow another batch within `BUSY_GAP_SECONDS` are measured: a lone job on an
idle queue, or the first batch after a quiet spell, says when work arrived, not how fast the worker
is. The figure is a moving average per model family, written to Redis (broker.capacity) at most once
a second, and again on later batches of any size so it stays fresh while the worker lives.
"""

from __future__ import annotations

import logging
import os
import socket
import time

import redis

from broker.capacity import report_capacity
from config import Settings

log = logging.getLogger(__name__)

SMOOTHING = 0.3
REPORT_EVERY_SECONDS = 1.0
BUSY_GAP_SECONDS = 2.0


class CapacityMeter:
    """Per process; called from the batch loop's thread only."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self.rates: dict[str, float] = {}
        self._reported: dict[str, float] = {}
        self._last: float | None = None

    def observe(self, family: str, jobs: int, now: float | None = None) -> None:
        """A model batch of `jobs` was just computed (its write may still be in flight)."""
        now = time.monotonic() if now is None else now
        previous, self._last = self._last, now
        busy = previous is not None and 0 < now - previous <= BUSY_GAP_SECONDS
        if busy and jobs >= max(1, self.settings.max_batch_size // 2):
            assert previous is not None
            rate = jobs / (now - previous)
            known = self.rates.get(family)
            self.rates[family] = rate if known is None else known + SMOOTHING * (rate - known)
        self._report(family)

    def _report(self, family: str) -> None:
        rate = self.rates.get(family)
        now = time.monotonic()
        if rate is None or now - self._reported.get(family, 0.0) < REPORT_EVERY_SECONDS:
            return
        self._reported[family] = now
        try:
            report_capacity(self.client, self.settings, family, self.worker, rate)
        except redis.RedisError:
            log.debug("capacity not reported", exc_info=True)
