"""Results in input order whatever order jobs finish in; waiting for many with a few long-polls."""

from __future__ import annotations

import threading
import time

import pytest
from assay_client.cli.ordered import OrderedWriter
from assay_client.errors import Gone, NotFound, WaitTimeout
from assay_client.models import Job
from assay_client.watch import JobWatcher
from hypothesis import given
from hypothesis import strategies as st


@given(st.permutations(list(range(40))))
def test_any_finishing_order_is_written_in_input_order(order: list[int]) -> None:
    out: list[int] = []
    writer: OrderedWriter[int] = OrderedWriter(out.append)
    for index in order:
        writer.put(index, index)
        assert out == list(range(writer.written))  # always a prefix, never a gap
    assert out == list(range(40)) and writer.waiting == 0


def test_each_line_goes_out_as_soon_as_everything_before_it_has() -> None:
    out: list[str] = []
    writer: OrderedWriter[str] = OrderedWriter(out.append)
    writer.put(2, "c")
    writer.put(1, "b")
    assert out == [] and writer.waiting == 2
    writer.put(0, "a")
    assert out == ["a", "b", "c"]
    with pytest.raises(ValueError, match="twice"):
        writer.put(1, "again")


def job(job_id: str, status: str) -> Job:
    return Job.from_dict(
        {
            "id": job_id,
            "analysis": "sentiment",
            "status": status,
            "created_at": "2026-11-23T12:00:00.000001Z",
            "started_at": None,
            "completed_at": "2026-11-23T12:00:01Z" if status == "succeeded" else None,
            "result": {"label": "positive"} if status == "succeeded" else None,
            "error": None,
            "metadata": {},
            "attempts": 1,
        }
    )


class FakeServer:
    """Stands in for GET /v1/jobs/{id}?wait=N: a job finishes after `polls[id]` long-polls."""

    def __init__(self, polls: dict[str, int]) -> None:
        self.polls = dict(polls)
        self.calls: list[tuple[str, float]] = []
        self.lock = threading.Lock()

    def fetch(self, job_id: str, wait: float) -> Job:
        with self.lock:
            self.calls.append((job_id, wait))
            if job_id not in self.polls:
                raise NotFound(f"no job {job_id!r}", code="job_not_found", status=404)
            self.polls[job_id] -= 1
            left = self.polls[job_id]
        if left > 0:
            time.sleep(0.01)  # the long-poll ran out
            return job(job_id, "running")
        return job(job_id, "succeeded")


def test_jobs_come_back_as_they_finish_each_long_polled_not_busy_polled() -> None:
    server = FakeServer({"slow": 3, "fast": 1, "mid": 2})
    watcher = JobWatcher(server.fetch, concurrency=2, long_poll=30)
    watcher.add(["slow", "fast", "mid"])
    watcher.close()
    finished = [j.id for j in watcher]
    assert sorted(finished) == ["fast", "mid", "slow"] and finished[-1] == "slow"
    assert len(server.calls) == 3 + 1 + 2  # one request per long-poll, none wasted
    assert {wait for _, wait in server.calls} == {30}


def test_final_jobs_are_not_fetched_and_duplicates_are_waited_for_once() -> None:
    server = FakeServer({"b": 1})
    watcher = JobWatcher(server.fetch, concurrency=1)
    watcher.add([job("a", "succeeded"), "b", "b"])
    watcher.close()
    assert sorted(j.id for j in watcher) == ["a", "b"]
    assert [c[0] for c in server.calls] == ["b"]


def test_jobs_added_while_iterating_are_waited_for_too() -> None:
    server = FakeServer({f"j{i}": 1 for i in range(6)})
    watcher = JobWatcher(server.fetch, concurrency=3)

    def producer() -> None:
        for start in (0, 2, 4):
            watcher.add([f"j{start}", f"j{start + 1}"])
            time.sleep(0.02)
        watcher.close()

    threading.Thread(target=producer).start()
    assert sorted(j.id for j in watcher) == [f"j{i}" for i in range(6)]


def test_an_error_reaches_the_caller() -> None:
    watcher = JobWatcher(FakeServer({}).fetch, concurrency=1)
    watcher.add(["gone"])
    watcher.close()
    with pytest.raises(NotFound):
        list(watcher)
    failing = JobWatcher(FakeServer({}).fetch, concurrency=1)
    failing.fail(RuntimeError("the submitting thread failed"))
    with pytest.raises(RuntimeError, match="submitting"):
        list(failing)


def test_a_deadline_ends_the_wait_naming_what_is_left() -> None:
    server = FakeServer({"never": 10**9, "soon": 1})
    watcher = JobWatcher(server.fetch, concurrency=2, long_poll=30, timeout=0.2)
    watcher.add(["never", "soon"])
    watcher.close()
    seen: list[str] = []
    with pytest.raises(WaitTimeout) as caught:
        seen.extend(j.id for j in watcher)
    assert seen == ["soon"] and caught.value.pending == ["never"]
    assert all(wait <= 0.2 for _, wait in server.calls)  # never asks the server to hold past the deadline


def test_a_job_erased_while_waited_for_comes_back_as_its_bare_record() -> None:
    """GET of an erased job is 410 with what remains in details.job: it is final, and waiting for many
    (wait_many, iter_results, `assay submit --wait`) stopped at it with an error, dropping every other result."""
    bare = {**job("erased", "canceled").raw, "result": None, "erased_at": "2026-11-23T12:00:02Z"}
    server = FakeServer({"ok": 2})

    def fetch(job_id: str, wait: float) -> Job:
        if job_id == "erased":
            raise Gone("job erased", code="job_erased", status=410, details={"job": bare})
        return server.fetch(job_id, wait)

    watcher = JobWatcher(fetch, concurrency=2)
    watcher.add(["erased", "ok"])
    watcher.close()
    done = {j.id: j for j in watcher}
    assert done["ok"].status == "succeeded"
    assert done["erased"].status == "canceled" and done["erased"].erased_at is not None
