"""The group-commit writer's own logic, with gevent greenlets and a write function that records its calls."""

from __future__ import annotations

import gevent

from app.group_commit import GroupCommit


def test_waiting_submissions_are_written_together_and_each_gets_its_own_answer() -> None:
    groups: list[list[tuple[str, list[int]]]] = []

    def write(requests: list[tuple[str, list[int]]]) -> list[tuple[list[dict], bool]]:
        groups.append(requests)
        gevent.sleep(0.01)  # a transaction: others gather meanwhile
        return [([{"tenant": tenant, "n": n} for n in specs], True) for tenant, specs in requests]

    writer = GroupCommit(write, max_group=8)
    calls = [gevent.spawn(writer.submit, f"t{i % 3}", [i, i + 100]) for i in range(20)]
    gevent.joinall(calls, raise_error=True)
    for i, call in enumerate(calls):
        assert call.value == ([{"tenant": f"t{i % 3}", "n": i}, {"tenant": f"t{i % 3}", "n": i + 100}], True)
    sizes = [len(group) for group in groups]
    assert sum(sizes) == 20 and max(sizes) == 8 and len(groups) < 20
    assert writer.submit("alone", [1]) == ([{"tenant": "alone", "n": 1}], True)


def test_a_failed_write_fails_its_group_and_the_writer_goes_on() -> None:
    fail = [True]

    def write(requests: list[tuple[str, list[int]]]) -> list[tuple[list[dict], bool]]:
        gevent.sleep(0.01)
        if fail[0]:
            raise ConnectionError("database unreachable")
        return [([], True) for _ in requests]

    writer = GroupCommit(write)
    calls = [gevent.spawn(writer.submit, "t", [i]) for i in range(5)]
    gevent.joinall(calls)
    assert all(isinstance(call.exception, ConnectionError) for call in calls)
    fail[0] = False
    assert writer.submit("t", [1]) == ([], True)


def test_a_killed_writer_leaves_nobody_waiting() -> None:
    def write(requests: list[tuple[str, list[int]]]) -> list[tuple[list[dict], bool]]:
        gevent.sleep(10)
        return []

    writer = GroupCommit(write)
    first = gevent.spawn(writer.submit, "t", [1])
    gevent.sleep(0.01)
    second = gevent.spawn(writer.submit, "t", [2])
    gevent.sleep(0.01)
    writer._writer.kill()
    gevent.joinall([first, second], timeout=5)
    assert isinstance(second.exception, RuntimeError)
    assert first.ready() and not isinstance(first.value, tuple)  # its write was interrupted: no answer
