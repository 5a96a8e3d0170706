"""GET /v1/events: the key's tenant's job state changes as Server-Sent Events, resumable with Last-Event-ID.

Events come from the tenant's capped Redis stream (broker.job_events), which the lifecycle appends to after
each commit, next to the `?wait` notifications. One listener per API process subscribes to the
"tenant's stream grew" channel and wakes that tenant's open streams here; a woken stream reads what is new
with one XRANGE from its last id. No stream holds a Redis or PostgreSQL connection while it waits, so
under gunicorn's gevent workers an idle stream costs a greenlet and a socket.

Bounded: streams per key (with `?wait` long-polls, app/ratelimits.py), streams per process
(`max_streams_per_process`, 503 past it), a stream's life (`events_max_stream_seconds`; the client
reconnects with Last-Event-ID and loses nothing), and the resumption window (`events_window` events per
tenant; a Last-Event-ID older than that gets an `event: reset` first, telling the client to re-list).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections import defaultdict
from collections.abc import Iterator

import redis
from flask import Blueprint, Response, current_app, g, request

from app import draining
from app.auth import authenticate, still_valid
from app.errors import ApiError
from app.ratelimits import SLOT_LEASE_SECONDS, take_slot
from app.request_json import check_query
from app.resources import resources
from broker.job_events import channel, first_id, last_id, never_trimmed, read_after

log = logging.getLogger(__name__)

bp = Blueprint("events", __name__, url_prefix="/v1/events")
bp.before_request(authenticate)

#: Each half of a Redis stream id is an unsigned 64-bit integer; past that every read of the stream fails.
_MAX_ID_PART = 2**64 - 1


def _at_most(limit: int) -> str:
    """A regular expression of the decimal numbers from 0 to `limit` (fewer digits, or as many and not above)."""
    digits = str(limit)
    shorter = [f"[0-9]{{1,{len(digits) - 1}}}"]
    equal = [f"{digits[:i]}[0-{int(d) - 1}][0-9]{{{len(digits) - i - 1}}}" for i, d in enumerate(digits) if d != "0"]
    return "(?:" + "|".join([*shorter, *equal, digits]) + ")"


#: A Last-Event-ID the stream takes: published as is in the OpenAPI document, so a schema-valid id is never refused.
EVENT_ID_PATTERN = f"{_at_most(_MAX_ID_PART)}-{_at_most(_MAX_ID_PART)}"
_EVENT_ID = re.compile(EVENT_ID_PATTERN)
#: `?lastEventId=`: where EventSource polyfills (event-source-polyfill, eventsource) put the id on reconnect.
LAST_EVENT_ID_PARAMETER = "lastEventId"
READ_CHUNK = 500
RECONNECT_MS = 2000


class EventHub:
    """One per API process: a single pub/sub subscription that wakes the streams of the tenant named."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._redis, self._channel = client, channel(prefix)
        self._waiters: defaultdict[str, set[threading.Event]] = defaultdict(set)
        self._lock = threading.Lock()
        self._listener: threading.Thread | None = None
        self.healthy = False
        self.open = 0
        draining.on_stop(lambda: self._wake(None))  # every stream re-checks and ends

    def subscribe(self, tenant: str) -> threading.Event:
        woken = threading.Event()
        with self._lock:
            self._waiters[tenant].add(woken)
            self.open += 1
            if self._listener is None:
                self._listener = threading.Thread(target=self._listen, name="assay-events", daemon=True)
                self._listener.start()
        return woken

    def unsubscribe(self, tenant: str, woken: threading.Event) -> None:
        with self._lock:
            self.open -= 1
            waiters = self._waiters.get(tenant)
            if waiters is not None:
                waiters.discard(woken)
                if not waiters:
                    del self._waiters[tenant]

    def _wake(self, tenant: str | None) -> None:
        with self._lock:
            targets = (
                [w for ws in self._waiters.values() for w in ws] if tenant is None else self._waiters.get(tenant, ())
            )
            for woken in list(targets):
                woken.set()

    def _listen(self) -> None:
        """Forever: subscribe, wake on each message; after a Redis error, wake everyone (they re-read) and retry."""
        while True:
            try:
                pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self._channel)
                self.healthy = True
                self._wake(None)  # anything published while we were not subscribed
                while True:
                    message = pubsub.get_message(timeout=1.0)
                    if message is not None and message["type"] == "message":
                        self._wake(message["data"].decode())
            except (redis.RedisError, OSError):
                self.healthy = False
                log.warning("event listener lost Redis; streams poll until it is back", exc_info=True)
                self._wake(None)
                time.sleep(1.0)


def hub() -> EventHub:
    found = current_app.extensions.get("assay.events")
    if found is None:
        svc = resources()
        found = current_app.extensions["assay.events"] = EventHub(svc.redis, svc.settings.queue_prefix)
    return found


def _frame(event_id: str, data: dict[str, object], kind: str = "job") -> str:
    return f"id: {event_id}\nevent: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


@bp.get("")
def events() -> Response:
    """text/event-stream of `event: job` frames ({"job_id", "analysis", "status", "at", "error_code"?})."""
    svc = resources()
    s = svc.settings
    check_query(frozenset({LAST_EVENT_ID_PARAMETER}))
    # The header, or the query parameter that EventSource polyfills send where a browser sets no headers.
    given = (request.headers.get("Last-Event-ID") or request.args.get(LAST_EVENT_ID_PARAMETER, "")).strip()
    if given and not _EVENT_ID.fullmatch(given):
        raise ApiError(400, "invalid_last_event_id", "Last-Event-ID must be an event id this stream sent")
    events_hub = hub()
    if events_hub.open >= s.max_streams_per_process:
        raise ApiError(
            503, "too_many_streams", "this API process holds all the event streams it may", headers={"Retry-After": "5"}
        )
    slot = take_slot(SLOT_LEASE_SECONDS)  # renewed at each heartbeat, released when the stream ends
    try:
        tenant, prefix = g.tenant, s.queue_prefix
        reset = None
        newest = last_id(svc.redis, prefix, tenant)
        cursor = given or newest
        if given:
            oldest = first_id(svc.redis, prefix, tenant)
            # Events between may have been trimmed; "0-0" (a stream's first id while its tenant had no events)
            # asks for everything, which is all there while nothing was ever trimmed.
            from_start = given == "0-0" and never_trimmed(svc.redis, prefix, tenant)
            if oldest is not None and _older(given, oldest) and not from_start:
                reset = "Last-Event-ID is older than the events kept: list the jobs again"
            elif newest is not None and _older(newest, given):  # read from there, it would wait for ever
                reset, cursor = "Last-Event-ID is newer than any event sent: list the jobs again", newest
    except redis.RedisError:
        if slot is not None:
            slot.release()
        raise ApiError(
            503, "events_unavailable", "the event stream is unavailable", headers={"Retry-After": "5"}
        ) from None
    except BaseException:
        if slot is not None:
            slot.release()
        raise

    key = request.headers.get("Authorization", "").partition(" ")[2].strip()

    def stream() -> Iterator[str]:
        nonlocal cursor
        deadline = renewed = checked = time.monotonic()
        deadline += s.events_max_stream_seconds
        woken = events_hub.subscribe(tenant)  # here, not before: a body never read (HEAD) never subscribes
        try:
            # The id it starts from, before any event: a stream that ends before its first event (a deploy,
            # the hour's end) still leaves the client a Last-Event-ID, so what changes meanwhile is not lost.
            yield f"retry: {RECONNECT_MS}\nid: {cursor}\n\n"
            if reset:
                yield _frame(cursor, {"reason": reset}, "reset")
            while time.monotonic() < deadline and not draining.stopping():
                # First in each round, so a backlog that keeps filling whole chunks cannot skip them. Not more
                # than once a second whatever ASSAY_AUTH_CACHE_SECONDS says: a query on every wake of every
                # stream would load PostgreSQL with the event rate times the streams.
                if time.monotonic() - checked > max(s.auth_cache_seconds, 1.0):
                    # A revoked key's stream ends (its reconnect is refused, 401): it went on for up to an hour.
                    checked = time.monotonic()
                    try:
                        if not still_valid(svc, key):
                            break
                    except Exception:  # the database away: keep the stream, ask again later
                        log.warning("could not re-check an event stream's API key", exc_info=True)
                if slot is not None and time.monotonic() - renewed > SLOT_LEASE_SECONDS / 3:
                    slot.renew(SLOT_LEASE_SECONDS)  # not every heartbeat: 500 streams would storm Redis
                    renewed = time.monotonic()
                woken.clear()
                try:
                    rows = read_after(svc.redis, prefix, tenant, cursor, READ_CHUNK)
                except redis.RedisError:
                    rows = []
                for event_id, data in rows:
                    cursor = event_id
                    yield _frame(event_id, data)
                if len(rows) == READ_CHUNK:
                    continue
                if draining.stopping():  # told between the check above and this wait
                    break
                wait = s.events_heartbeat_seconds if events_hub.healthy else 1.0
                if not woken.wait(min(wait, max(0.0, deadline - time.monotonic()))):
                    yield ": keepalive\n\n"  # a hung-up client shows here, as a failed write
        finally:
            events_hub.unsubscribe(tenant, woken)

    response = Response(stream(), mimetype="text/event-stream")
    if slot is not None:
        # On close, which the server calls whether or not it read the body: the stream's own `finally`
        # never runs for a body that was never read (HEAD), and its slot stayed taken.
        response.call_on_close(slot.release)
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    return response


def _parts(event_id: str) -> tuple[int, int]:
    ms, _, seq = event_id.partition("-")
    return int(ms), int(seq or 0)


def _older(a: str, b: str) -> bool:
    return _parts(a) < _parts(b)
