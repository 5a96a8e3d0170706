"""Waiting for many jobs at once: a few threads long-poll, results come back as jobs finish.

The API has no "wait for any of these" call, so each thread holds one `GET /v1/jobs/{id}?wait=N`
(the server answers the moment that job is final). A job still running after N seconds goes to
the back of the line. That is one request per job in the usual case, never a busy loop.
Threads are daemons: an interrupted caller is not kept alive by a long-poll in flight.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator

from assay_client.errors import Gone, WaitTimeout
from assay_client.models import Job

Fetch = Callable[[str, float], Job]  # (job id, seconds the server may wait) -> the job

_STOP = object()


def erased_job(exc: Gone) -> Job | None:
    """What remains of a job erased while it was waited for (410 `details.job`): final, `erased_at` set."""
    details = exc.details
    return Job.from_dict(details["job"]) if isinstance(details, dict) and isinstance(details.get("job"), dict) else None


_CLOSED = object()


class JobWatcher:
    """Add jobs (or ids) at any time, from any thread; iterate to receive each once it is final."""

    def __init__(
        self, fetch: Fetch, *, concurrency: int = 8, long_poll: float = 30.0, timeout: float | None = None
    ) -> None:
        self._fetch = fetch
        self._long_poll = long_poll
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._pending: queue.Queue[object] = queue.Queue()
        self._results: queue.Queue[object] = queue.Queue()
        self._outstanding: set[str] = set()
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, name=f"assay-wait-{n}", daemon=True) for n in range(concurrency)
        ]
        for thread in self._threads:
            thread.start()

    def add(self, jobs: Iterable[Job | str]) -> None:
        for item in jobs:
            job_id = item if isinstance(item, str) else item.id
            with self._lock:
                if job_id in self._seen:
                    continue
                self._seen.add(job_id)
                self._outstanding.add(job_id)
            if isinstance(item, Job) and item.is_final:
                self._results.put(item)
            else:
                self._pending.put(job_id)

    def close(self) -> None:
        """No more jobs will be added: iteration ends once the ones added are final."""
        self._results.put(_CLOSED)

    def fail(self, exc: BaseException) -> None:
        """Make the iterating side raise `exc` (e.g. the thread adding jobs failed)."""
        self._results.put(exc)

    def stop(self) -> None:
        for _ in self._threads:
            self._pending.put(_STOP)

    def _remaining(self) -> float | None:
        return None if self._deadline is None else self._deadline - time.monotonic()

    def _run(self) -> None:
        while True:
            job_id = self._pending.get()
            if job_id is _STOP:
                return
            assert isinstance(job_id, str)
            remaining = self._remaining()
            wait = self._long_poll if remaining is None else max(0.0, min(self._long_poll, remaining))
            try:
                job = self._fetch(job_id, wait)
            except Gone as exc:  # erased meanwhile: its bare record is its final state, not the wait's end
                found = erased_job(exc)
                self._results.put(exc if found is None else found)
                continue
            except BaseException as exc:  # handed to the consumer, who decides
                self._results.put(exc)
                continue
            if job.is_final:
                self._results.put(job)
            elif self._deadline is not None and time.monotonic() >= self._deadline:
                self._results.put(WaitTimeout(f"job {job_id} is still {job.status}", job=job))
            else:
                self._pending.put(job_id)

    def __iter__(self) -> Iterator[Job]:
        closed = False
        try:
            while not (closed and not self._outstanding):
                remaining = self._remaining()
                try:
                    item = self._results.get(timeout=None if remaining is None else max(remaining, 0) + 5)
                except queue.Empty:
                    raise self._timeout() from None
                if item is _CLOSED:
                    closed = True
                elif isinstance(item, WaitTimeout):
                    raise self._timeout(item.job)
                elif isinstance(item, BaseException):
                    raise item
                else:
                    assert isinstance(item, Job)
                    with self._lock:
                        self._outstanding.discard(item.id)
                    yield item
        finally:
            self.stop()

    def _timeout(self, job: Job | None = None) -> WaitTimeout:
        with self._lock:
            pending = sorted(self._outstanding)
        return WaitTimeout(f"{len(pending)} job(s) not final in time", job=job, pending=pending)
