"""GET /v1/events against the real stack: gunicorn (gevent), a Celery worker, PostgreSQL and Redis.

Each tenant's stream carries only its own jobs; a client that drops and reconnects with Last-Event-ID
gets every change it missed; 500 idle streams cost the API worker little memory.
"""

from __future__ import annotations

import json
import resource
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import closing, suppress
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import psutil
import pytest
import requests

from tests.support import Client, Proc, Stack, wait_for

FINAL = {"succeeded", "failed", "canceled"}


@pytest.fixture(scope="module")
def worker(stack: Stack) -> Proc:
    return stack.worker("events")


@dataclass
class Stream:
    """A real SSE client on a thread: every `event: job` frame with its id, in arrival order."""

    url: str
    key: str
    last_event_id: str | None = None
    events: list[tuple[str, str, dict]] = field(default_factory=list)  # (id, kind, data)
    opened: threading.Event = field(default_factory=threading.Event)
    ended: threading.Event = field(default_factory=threading.Event)
    position: str | None = None  # the last id the stream gave, with an event or without (what to resume from)
    _response: requests.Response | None = None

    def start(self) -> Stream:
        headers = {"Authorization": f"Bearer {self.key}"}
        if self.last_event_id:
            headers["Last-Event-ID"] = self.last_event_id
        self._response = requests.get(f"{self.url}/v1/events", headers=headers, stream=True, timeout=(5, 60))
        assert self._response.status_code == 200, self._response.text
        assert self._response.headers["Content-Type"].startswith("text/event-stream")
        threading.Thread(target=self._read, daemon=True).start()
        wait_for(self.opened.is_set, 10, what="the stream's first frame")
        return self

    def _read(self) -> None:
        assert self._response is not None
        fields: dict[str, str] = {}
        try:
            for line in self._response.iter_lines(decode_unicode=True):
                if line.startswith("retry:"):
                    self.opened.set()
                elif line == "":
                    if "id" in fields:
                        self.position = fields["id"]
                    if "data" in fields:
                        self.events.append(
                            (fields.get("id", ""), fields.get("event", "message"), json.loads(fields["data"]))
                        )
                    fields = {}
                elif not line.startswith(":"):
                    name, _, value = line.partition(":")
                    fields[name] = value.removeprefix(" ")
        except (requests.RequestException, AttributeError, ValueError):
            pass  # closed by the test
        finally:
            self.ended.set()

    def close(self) -> None:
        """Hang up at once (closing the response alone waits for the reader's next frame, a heartbeat away)."""
        if self._response is not None:
            with suppress(OSError, AttributeError):
                self._response.raw.connection.sock.shutdown(socket.SHUT_RDWR)
            self._response.close()

    def jobs(self) -> dict[str, list[str]]:
        seen: dict[str, list[str]] = {}
        for _, kind, data in self.events:
            if kind == "job":
                seen.setdefault(data["job_id"], []).append(data["status"])
        return seen

    def final(self, ids: set[str]) -> bool:
        seen = self.jobs()
        return all(any(s in FINAL for s in seen.get(i, [])) for i in ids)


def test_each_tenant_sees_only_its_own_jobs(api_url: str, worker: Proc, new_key) -> None:
    key_a, key_b = new_key(), new_key()
    a, b = Stream(api_url, key_a).start(), Stream(api_url, key_b).start()
    try:
        ids_a = {j["id"] for j in Client(api_url, key_a).submit_batch([f"A likes it {i}" for i in range(4)])}
        ids_b = {Client(api_url, key_b).submit(f"B hates it {i}")["id"] for i in range(3)}
        wait_for(lambda: a.final(ids_a) and b.final(ids_b), 60, what="both streams to see their jobs finish")
    finally:
        a.close()
        b.close()
    assert set(a.jobs()) == ids_a, "tenant A's stream carried another tenant's jobs"
    assert set(b.jobs()) == ids_b, "tenant B's stream carried another tenant's jobs"
    for job_id in ids_a | ids_b:
        statuses = (a.jobs() | b.jobs())[job_id]
        assert statuses[0] == "queued" and statuses[-1] == "succeeded", (job_id, statuses)
        assert "running" in statuses
    ids = [event_id for event_id, _, _ in a.events]
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-")))) and len(set(ids)) == len(ids)


def test_a_cache_hit_is_one_succeeded_event(api_url: str, worker: Proc, new_key) -> None:
    """A text analysed before is created succeeded (the result cache): its stream carried the
    `succeeded` twice, once as created and once as finished, so a client counting events counted it twice."""
    key = new_key()
    user = Client(api_url, key)
    first = user.submit("a text this tenant sends twice, word for word")
    assert user.get(f"/v1/jobs/{first['id']}", params={"wait": 20}).json()["status"] == "succeeded"
    stream = Stream(api_url, key).start()
    try:
        hit = user.submit("a text this tenant sends twice, word for word")
        (batched,) = user.submit_batch(["a text this tenant sends twice, word for word"])
        assert hit["status"] == batched["status"] == "succeeded", (hit, batched)
        marker = user.submit("a later job, so the stream has caught up once it is seen")["id"]
        wait_for(lambda: stream.final({marker}), 30, what="the later job on the stream")
    finally:
        stream.close()
    assert stream.jobs()[hit["id"]] == ["succeeded"]
    assert stream.jobs()[batched["id"]] == ["succeeded"]


def test_reconnect_with_last_event_id_misses_nothing(api_url: str, worker: Proc, new_key) -> None:
    key = new_key()
    user = Client(api_url, key)
    first = Stream(api_url, key).start()
    job = user.submit("before the drop")
    user.get(f"/v1/jobs/{job['id']}", params={"wait": 20})
    wait_for(lambda: first.final({job["id"]}), 20, what="the first job on the stream")
    first.close()
    resume_from = first.events[-1][0]

    missed = [j["id"] for j in user.submit_batch([f"while away {i}" for i in range(5)])]
    for job_id in missed:
        assert user.get(f"/v1/jobs/{job_id}", params={"wait": 20}).json()["status"] == "succeeded"
    canceled = user.submit_batch(["canceled while away"])[0]["id"]
    user.post(f"/v1/jobs/{canceled}/cancel")
    # An idle worker may finish the job before the cancel arrives: the stream must end as the job did.
    canceled_as = user.get(f"/v1/jobs/{canceled}", params={"wait": 20}).json()["status"]

    again = Stream(api_url, key, last_event_id=resume_from).start()
    try:
        wait_for(lambda: again.final({*missed, canceled}), 20, what="the missed events after reconnecting")
        later = user.submit("after the reconnect")["id"]
        wait_for(lambda: again.final({later}), 30, what="live events after the catch-up")
    finally:
        again.close()
    seen = again.jobs()
    assert job["id"] not in seen, "events before Last-Event-ID were sent again"
    for job_id in missed:
        assert seen[job_id][0] == "queued" and seen[job_id][-1] == "succeeded", seen[job_id]
    assert seen[canceled][-1] == canceled_as in ("canceled", "succeeded")
    assert all(_key(i) > _key(resume_from) for i, _, _ in again.events)


@pytest.mark.parametrize("history", [True, False], ids=["events-before", "no-events-yet"])
def test_a_stream_that_ends_before_any_event_resumes_where_it_began(
    api_url: str, worker: Proc, new_key, history: bool
) -> None:
    """A stream gave no id until an event came: one that ended first (a deploy, worker recycling, the hour's
    end) left its client nothing to send as Last-Event-ID, and every change during the reconnect was lost."""
    key = new_key()
    user = Client(api_url, key)
    if history:
        before = user.submit("before the stream opened")["id"]
        assert user.get(f"/v1/jobs/{before}", params={"wait": 20}).json()["status"] == "succeeded"
    quiet = Stream(api_url, key).start()
    wait_for(lambda: quiet.position is not None, 5, what="the id a fresh stream starts from")
    quiet.close()
    assert quiet.events == []

    away = user.submit("while the client reconnects")["id"]
    assert user.get(f"/v1/jobs/{away}", params={"wait": 20}).json()["status"] == "succeeded"
    again = Stream(api_url, key, last_event_id=quiet.position).start()
    try:
        wait_for(lambda: again.final({away}), 20, what="the change made while reconnecting")
    finally:
        again.close()
    assert again.jobs()[away][0] == "queued"
    # Without history it began at "0-0": nothing was trimmed, so no reset either (it told the client to
    # list again for nothing).
    assert "reset" not in [kind for _, kind, _ in again.events], again.events[:2]
    if history:
        assert before not in again.jobs()
    else:
        assert quiet.position == "0-0"


def test_a_revoked_keys_open_stream_ends(api_url: str, db) -> None:
    """Revoking a key stopped its requests within the auth cache time, but a stream it had open went on
    carrying the tenant's job changes for up to ASSAY_EVENTS_MAX_STREAM_SECONDS (an hour)."""
    from store.keys import create_key, revoke_key

    with db.begin() as conn:
        issued = create_key(conn, f"stream-revoked-{secrets.token_hex(3)}")
    stream = Stream(api_url, issued.secret).start()
    try:
        with db.begin() as conn:
            assert revoke_key(conn, issued.key_id)
        # The auth cache (10 s) lets the key go; the stream notices at its next wake-up (heartbeat 15 s).
        assert stream.ended.wait(40), "a revoked key's event stream is still open"
    finally:
        stream.close()
    again = requests.get(f"{api_url}/v1/events", headers={"Authorization": f"Bearer {issued.secret}"}, timeout=10)
    assert again.status_code == 401 and again.json()["error"]["code"] == "invalid_api_key"


def _key(event_id: str) -> tuple[int, int]:
    ms, seq = event_id.split("-")
    return int(ms), int(seq)


@pytest.mark.parametrize("given", ["not-an-id", "18446744073709551616-0", "1-99999999999999999999"])
def test_bad_last_event_id_is_a_400(api_url: str, new_key, given: str) -> None:
    """Past 2**64 - 1 Redis refuses every read of the stream: the stream would stay silent for ever."""
    answer = requests.get(
        f"{api_url}/v1/events",
        headers={"Authorization": f"Bearer {new_key()}", "Last-Event-ID": given},
        timeout=10,
    )
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_last_event_id"


def test_the_last_event_id_may_come_as_a_query_parameter(api_url: str, new_key) -> None:
    """EventSource polyfills put the id in `?lastEventId=` on reconnect: it was ignored (the stream went on
    from now, silently skipping what was missed), and would now be refused as an unknown parameter."""
    headers = {"Authorization": f"Bearer {new_key()}"}
    bad = requests.get(f"{api_url}/v1/events", params={"lastEventId": "nope"}, headers=headers, timeout=10)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_last_event_id"
    newer = "18446744073709551615-0"
    with requests.get(
        f"{api_url}/v1/events", params={"lastEventId": newer}, headers=headers, stream=True, timeout=10
    ) as stream:
        assert stream.status_code == 200
        head = ""
        for chunk in stream.iter_content(chunk_size=None, decode_unicode=True):
            head += chunk
            if "event: reset" in head and head.endswith("\n\n"):
                break
    assert "event: reset" in head and "newer than any event" in head, head


def test_a_last_event_id_newer_than_any_event_resets_and_goes_on_live(api_url: str, worker: Proc, new_key) -> None:
    key = new_key()
    user = Client(api_url, key)
    first = user.submit("so that the stream has an event")
    user.get(f"/v1/jobs/{first['id']}", params={"wait": 20})
    stream = Stream(api_url, key, last_event_id="18446744073709551615-0").start()
    try:
        later = user.submit("after the reconnect")["id"]
        wait_for(lambda: stream.final({later}), 30, what="live events after a reset")
    finally:
        stream.close()
    kinds = [kind for _, kind, _ in stream.events]
    assert kinds[0] == "reset" and "newer" in stream.events[0][2]["reason"], stream.events[:2]
    assert first["id"] not in stream.jobs(), "a reset from the newest event replays nothing"


def _open_raw(url: str, key: str, count: int) -> Iterator[socket.socket]:
    """`count` streams on plain sockets (cheap for the test process), each read up to its first frame."""
    parts = urlsplit(url)
    request = (
        f"GET /v1/events HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Bearer {key}\r\n"
        "Accept: text/event-stream\r\n\r\n"
    ).encode()
    for _ in range(count):
        sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
        sock.sendall(request)
        head = b""
        while b"retry:" not in head:
            chunk = sock.recv(4096)
            assert chunk, head
            head += chunk
        assert head.startswith(b"HTTP/1.1 200"), head[:200]
        yield sock


def test_head_requests_hold_no_stream(stack: Stack, new_key) -> None:
    """HEAD answers a stream's headers and no body: it must give back the stream's place and the key's slot,
    or a few HEADs (a monitor's probe) leave the process refusing every stream with 503 until it restarts."""
    _, url = stack.api(ASSAY_API_WORKERS="1", ASSAY_MAX_STREAMS_PER_PROCESS="2", ASSAY_MAX_OPEN_WAITS_PER_KEY="2")
    key = new_key()
    with requests.Session() as session:
        for _ in range(5):
            head = session.head(f"{url}/v1/events", headers={"Authorization": f"Bearer {key}"}, timeout=10)
            assert head.status_code == 200, head.text
            assert head.headers["Content-Type"].startswith("text/event-stream")
    streams = [Stream(url, key).start(), Stream(url, key).start()]  # both places of the process, both slots
    for stream in streams:
        stream.close()


def test_500_idle_streams_cost_little_memory(stack: Stack, new_key) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2000:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    # A 1 s heartbeat: the streams notice the hang-up below within a second, so gunicorn stops at once.
    proc, url = stack.api(
        ASSAY_API_WORKERS="1",
        ASSAY_MAX_OPEN_WAITS_PER_KEY="1000",
        ASSAY_RATE_REQUESTS="100000",
        ASSAY_EVENTS_HEARTBEAT_SECONDS="1",
        ASSAY_MAX_STREAMS_PER_PROCESS="520",
    )
    (api_worker,) = psutil.Process(proc.popen.pid).children()
    key = new_key()
    socks = list(_open_raw(url, key, 20))  # warm: the listener, code paths, pools
    before = api_worker.memory_info().rss
    try:
        opening = time.monotonic()
        socks += list(_open_raw(url, key, 500))
        print(f"opened 500 streams in {time.monotonic() - opening:.1f}s")
        time.sleep(1.0)
        after = api_worker.memory_info().rss
        assert Client(url, key).get("/health").status_code == 200, "the worker stopped answering"
        over = Client(url, key).get("/v1/events", timeout=10)  # the 521st stream of this process
        assert over.status_code == 503 and over.json()["error"]["code"] == "too_many_streams", over.text
    finally:
        for sock in socks:
            with closing(sock):
                pass
        closing_at = time.monotonic()
        deadline = closing_at + 30  # let the streams see the hang-up, so the API stops at once
        port = int(urlsplit(url).port or 0)

        def streams_left() -> int:
            return sum(1 for c in api_worker.net_connections("tcp") if c.laddr and c.laddr.port == port)

        while streams_left() > 5 and time.monotonic() < deadline:
            time.sleep(0.5)
    print(f"streams ended {time.monotonic() - closing_at:.1f}s after the hang-up")
    grew = (after - before) / 2**20
    print(f"500 idle streams: API worker RSS {before / 2**20:.1f} → {after / 2**20:.1f} MiB (+{grew:.1f} MiB)")
    assert grew <= 50, f"500 idle streams took {grew:.1f} MiB"
    assert before > 0
