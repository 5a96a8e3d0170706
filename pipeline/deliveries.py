"""The webhook worker's work: hand out a batch of events to be delivered; and the sweep that re-sends due
retries, lost messages and the events of a deliverer that died.

A task only claims its batch (one statement) and hands each event to its receiver's lane
(webhooks.fairness); it returns as soon as every event is running, waiting in a lane, or deferred, so a
slow receiver never holds a task slot and the worker keeps taking batches for everyone else. Attempts
run on the process's bounded pool (starting one blocks while the pool is full: that is the
back-pressure that stops the worker taking more messages); their records are written in the
background, many per statement (pipeline.attempt_recorder). No database connection is held while
receivers answer.

Crash safety does not depend on the broker message: a claim locks each event for the attempt's
deadline plus a margin, and if this process dies before recording, the lock runs out and the sweeper
publishes the event again. A record lands only on an event still held under its attempt number.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import redis

from broker.inflight import held_ids, waiting
from config import Settings
from pipeline.attempt_recorder import AttemptRecorder
from pipeline.context import WorkerContext
from store.deliveries import AttemptRecord, ClaimedEvent, claim_events
from store.maintenance import due_events
from store.secrets_box import SecretBox
from store.webhook_secrets import signing_secrets
from webhooks.attempt import attempt_delivery
from webhooks.fairness import ReceiverLanes, receiver_of
from webhooks.http import WebhookHttp

log = logging.getLogger(__name__)

#: Seconds of a claim's lock beyond the attempt's own deadline: time to wait in a lane and to be recorded.
LOCK_MARGIN_SECONDS = 30.0
#: An event whose tenant's signing secret does not decrypt waits this long, costing no attempt: during a
#: key rotation the pods that know the new key take it once they are up; an operator fixing the keys
#: finds it still pending, not failed.
UNREADABLE_SECRET_RETRY_SECONDS = 60.0


@dataclass(frozen=True)
class Work:
    """A claimed event, ready to attempt: its signing secrets, and until when its claim is safe to use."""

    event: ClaimedEvent
    secrets: list[str]
    start_by: float  # monotonic; past this, the lock may run out mid-attempt: defer instead


@dataclass
class Deliverer:
    """One per webhook worker process: connection pools, receiver lanes, the pool of attempts in flight and
    the recorder."""

    settings: Settings
    http: WebhookHttp
    lanes: ReceiverLanes[Work]
    box: SecretBox
    spawn: Callable[[Callable[[], None]], None]
    recorder: AttemptRecorder

    def drain(self, timeout: float) -> bool:
        """Wait until every event handed out so far has its record written (tests, shutdown)."""
        return self.recorder.drain(timeout)


def bounded_spawner(limit: int) -> Callable[[Callable[[], None]], None]:
    """Start a function in the background, at most `limit` running at once across the process; starting
    one blocks while `limit` run. Greenlets in the gevent webhook worker, threads elsewhere (tests calling
    the deliverer directly)."""
    try:
        from gevent import monkey
        from gevent.pool import Pool
    except ImportError:  # pragma: no cover - gevent is a pinned dependency
        monkey = None
    if monkey is not None and monkey.is_module_patched("socket"):
        pool = Pool(limit)
        return lambda fn: pool.spawn(fn) and None
    slots = threading.BoundedSemaphore(limit)
    executor = ThreadPoolExecutor(max_workers=limit, thread_name_prefix="assay-webhook")

    def run(fn: Callable[[], None]) -> None:
        try:
            fn()
        finally:
            slots.release()

    def spawn(fn: Callable[[], None]) -> None:
        slots.acquire()
        executor.submit(run, fn)

    return spawn


_deliverers: dict[int, Deliverer] = {}
_made = threading.Lock()


def deliverer(ctx: WorkerContext) -> Deliverer:
    """The process's deliverer for this context, made on first use (after the worker forked and gevent
    patched): its connection pools, lanes and recorder must outlive each batch."""
    with _made:
        if id(ctx) not in _deliverers:
            _deliverers[id(ctx)] = _make_deliverer(ctx)
        return _deliverers[id(ctx)]


def drain_all() -> None:
    """At shutdown: let the attempts in flight end and their records land, so a restart re-sends nothing."""
    for d in list(_deliverers.values()):
        if not d.drain(d.settings.webhook_timeout_seconds + 5):
            log.warning("webhook attempts still in flight at shutdown; their locks run out and they are re-sent")


def _make_deliverer(ctx: WorkerContext) -> Deliverer:
    settings = ctx.settings
    return Deliverer(
        settings,
        WebhookHttp(
            allow_private=settings.webhook_allow_private,
            per_host=settings.webhook_per_host_limit,
            deadline_seconds=settings.webhook_timeout_seconds,
            max_body=settings.webhook_max_response_bytes,
        ),
        ReceiverLanes(
            limit=settings.webhook_per_host_limit,
            failures=settings.webhook_circuit_failures,
            open_seconds=settings.webhook_circuit_open_seconds,
        ),
        SecretBox(settings.secrets_key_list),
        bounded_spawner(settings.webhook_concurrency),
        AttemptRecorder(ctx.db),
    )


def _deferred(event: ClaimedEvent, seconds: float) -> AttemptRecord:
    """Not tried (receiver paused or busy): costs no attempt; the event waits `seconds`."""
    return AttemptRecord(event.id, event.attempt, event.url, "deferred", None, 0, None, seconds)


def _attempt(d: Deliverer, receiver: str, work: Work) -> AttemptRecord:
    event = work.event
    paused = d.lanes.paused_for(receiver)
    if paused > 0:
        return _deferred(event, paused)
    if time.monotonic() > work.start_by:  # waited in its lane too long for its claim: give it back
        return _deferred(event, 0.0)
    started = time.monotonic()
    answered = False
    try:
        result = attempt_delivery(
            d.settings,
            d.http,
            event_id=event.id,
            url=event.url,
            payload=event.payload,
            secrets=work.secrets,
            attempt=event.attempt,
        )
        # Healthy enough not to pause: it answered, and not with "overloaded" or "broken".
        answered = result.status_code is not None and result.status_code < 500 and result.status_code != 429
    finally:
        d.lanes.done(receiver, ok=answered, seconds=time.monotonic() - started)
    return AttemptRecord(
        event.id,
        event.attempt,
        event.url,
        result.outcome,
        result.status_code,
        result.latency_ms,
        result.error,
        result.next_attempt_in,
    )


def _run_lane(d: Deliverer, receiver: str, first: Work) -> None:
    """Attempt `first`, then whatever waits in its receiver's lane, one after another."""
    work: Work | None = first
    while work is not None:
        try:
            record = _attempt(d, receiver, work)
        except Exception:  # a bug must not strand the lane; the event's lock runs out and it is re-sent
            log.exception("webhook attempt crashed", extra={"event_id": work.event.id})
            d.recorder.cancel(1)
        else:
            d.recorder.add(work.event.owner, record)
        work = d.lanes.next(receiver)


def deliver_batch(ctx: WorkerContext, d: Deliverer, event_ids: list[str]) -> Counter[str]:
    """Claim a batch and hand every event to its receiver's lane; returns how many were started, queued
    behind others to the same receiver, or deferred. Attempts and their records finish in the background."""
    s = ctx.settings
    lock_seconds = s.webhook_timeout_seconds + LOCK_MARGIN_SECONDS
    with ctx.db.begin() as conn:
        claimed = claim_events(conn, event_ids, lock_seconds=lock_seconds)
        secrets = signing_secrets(conn, [event.owner for event in claimed], d.box) if claimed else {}
    handed: Counter[str] = Counter()
    start_by = time.monotonic() + LOCK_MARGIN_SECONDS - 5.0
    d.recorder.expect(len(claimed))
    for event in claimed:
        if event.owner not in secrets:  # its secret does not decrypt (store.webhook_secrets): wait, unsigned never
            d.recorder.add(event.owner, _deferred(event, UNREADABLE_SECRET_RETRY_SECONDS))
            handed["defer"] += 1
            continue
        receiver = receiver_of(event.url)
        work = Work(event, secrets[event.owner], start_by)
        offer = d.lanes.offer(receiver, work)
        handed[offer.action] += 1
        if offer.action == "defer":
            d.recorder.add(event.owner, _deferred(event, offer.seconds))
        elif offer.action == "run":
            d.spawn(lambda receiver=receiver, work=work: _run_lane(d, receiver, work))
    log.debug("webhook batch", extra={"events": len(event_ids), "claimed": len(claimed), **handed})
    return handed


def sweep_webhooks(ctx: WorkerContext) -> int:
    """Publish events whose retry is due, whose message was lost, or whose deliverer died."""
    queue = ctx.settings.webhook_queue
    try:
        epoch = ctx.lifecycle.publisher.current_epoch()
        drained = waiting(ctx.redis, queue) == 0
        held = held_ids(ctx.redis, queue, ctx.settings.webhook_publish_grace_seconds) if drained else set()
    except redis.RedisError:
        log.warning("broker unreachable: webhook sweep skipped", exc_info=True)
        return 0
    except OverflowError:
        drained, held = False, set()
    with ctx.lifecycle.transaction(epoch) as unit:
        due = due_events(
            unit.conn,
            epoch=epoch,
            drained=drained,
            held=held,
            publish_grace_seconds=ctx.settings.webhook_publish_grace_seconds,
        )
        unit.publish_events(due)
    if due:
        log.info("webhook sweep", extra={"published": len(due)})
    return len(due)
