"""Single submissions that arrive together share one transaction (group commit).

Why: at 16 concurrent connections each gunicorn worker holds several submissions at once, and each
paid for its own BEGIN, cache lookup, INSERT, COMMIT (a WAL flush), event-stream write and publish.
Here one writer greenlet per API process takes every submission waiting at that moment and writes them
together: one cache lookup and one multi-row INSERT per tenant, one COMMIT, one event-stream write and
one publish. While it writes, the next group gathers, so the group size follows the load by itself
(one request alone is written at once, as before). Every request still answers only after its row is
committed and its publish was attempted: nothing about what a 202 promises changes.

Only what cannot fail on its own goes through a group: text jobs without an Idempotency-Key (a key's
conflict must fail its own request, not its neighbours'). Audio, call records and keyed requests take
the single path. A database or broker error fails every request of its group the way it would have
failed each alone (503, nothing committed, or committed and left to the sweeper to publish).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from telemetry.metrics import SUBMISSION_GROUP

log = logging.getLogger(__name__)

#: (tenant, specs) of each waiting request → (rows, created) of each, in order. Runs one transaction.
WriteGroup = Callable[[list[tuple[str, list[Any]]]], list[tuple[list[dict[str, Any]], bool]]]


@dataclass
class _Waiting:
    tenant: str
    specs: list[Any]
    done: Any  # gevent.event.AsyncResult


@dataclass
class GroupCommit:
    """The per-process writer. `submit` blocks the calling greenlet until its group is written."""

    write: WriteGroup
    max_group: int = 64
    _queue: list[_Waiting] = field(default_factory=list)
    _wake: Any = None
    _writer: Any = None

    def submit(self, tenant: str, specs: list[Any]) -> tuple[list[dict[str, Any]], bool]:
        from gevent.event import AsyncResult, Event

        if self._wake is None:
            self._wake = Event()
        waiting = _Waiting(tenant, specs, AsyncResult())
        self._queue.append(waiting)
        self._wake.set()
        if self._writer is None or self._writer.dead:
            import gevent

            self._writer = gevent.spawn(self._run)
        return waiting.done.get()  # type: ignore[no-any-return]

    def _run(self) -> None:
        try:
            while True:
                self._wake.wait()
                self._wake.clear()
                while self._queue:
                    group, self._queue = self._queue[: self.max_group], self._queue[self.max_group :]
                    self._write(group)
        finally:  # killed (the worker stopping): nobody is left waiting for a writer that is gone
            left, self._queue = self._queue, []
            for waiting in left:
                waiting.done.set_exception(RuntimeError("the submission writer stopped"))

    def _write(self, group: list[_Waiting]) -> None:
        SUBMISSION_GROUP.observe(len(group))
        try:
            results = self.write([(w.tenant, w.specs) for w in group])
        except BaseException as exc:  # every request of the group fails as it would have alone
            for waiting in group:
                waiting.done.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for waiting, result in zip(group, results, strict=True):
            waiting.done.set(result)
