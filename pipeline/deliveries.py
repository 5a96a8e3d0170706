"""The webhook worker's work: deliver a batch of events; and the sweep that re-sends due retries, lost
messages and the events of a deliverer that died.

A batch costs two statements whatever its size (one claim, one record of every attempt); its attempts
run concurrently, sharing the process's bound on attempts in flight and each receiver's fair share
(webhooks.fairness). No database connection is held while receivers answer.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import redis

from broker.inflight import held_ids, waiting
from config import Settings
from pipeline.context import WorkerContext
from store.deliveries import AttemptRecord, ClaimedEvent, claim_events, record_attempts, stop_url
from store.maintenance import due_events
from store.secrets_box import SecretBox
from store.webhook_secrets import signing_secrets
from webhooks.attempt import attempt_delivery
from webhooks.fairness import ReceiverGate, receiver_of
from webhooks.http import WebhookHttp

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class Deliverer:
    """One per webhook worker process: connection pools, fair shares, and the bound on attempts in flight."""

    http: WebhookHttp
    gate: ReceiverGate
    box: SecretBox
    run_all: Callable[[Callable[[Any], Any], Iterable[Any]], list[Any]]


def concurrent_runner(limit: int) -> Callable[[Callable[[T], R], Iterable[T]], list[R]]:
    """Run a function over items, at most `limit` at a time across every caller in the process: greenlets
    in the gevent webhook worker, threads elsewhere (tests calling the deliverer directly)."""
    try:
        from gevent import monkey
        from gevent.pool import Pool
    except ImportError:  # pragma: no cover - gevent is a pinned dependency
        monkey = None
    if monkey is not None and monkey.is_module_patched("socket"):
        pool = Pool(limit)
        return lambda fn, items: list(pool.imap(fn, items))
    executor = ThreadPoolExecutor(max_workers=min(limit, 32), thread_name_prefix="assay-webhook")
    return lambda fn, items: list(executor.map(fn, items))


_deliverers: dict[int, Deliverer] = {}


def deliverer(settings: Settings) -> Deliverer:
    """The process's deliverer for these settings, made on first use (after the worker forked and gevent
    patched): its connection pools and fair shares must outlive each batch."""
    if id(settings) not in _deliverers:
        _deliverers[id(settings)] = _make_deliverer(settings)
    return _deliverers[id(settings)]


def _make_deliverer(settings: Settings) -> Deliverer:
    return Deliverer(
        WebhookHttp(
            allow_private=settings.webhook_allow_private,
            per_host=settings.webhook_per_host_limit,
            deadline_seconds=settings.webhook_timeout_seconds,
            max_body=settings.webhook_max_response_bytes,
        ),
        ReceiverGate(
            limit=settings.webhook_per_host_limit,
            failures=settings.webhook_circuit_failures,
            open_seconds=settings.webhook_circuit_open_seconds,
        ),
        SecretBox(settings.secrets_key_list),
        concurrent_runner(settings.webhook_concurrency),
    )


def _attempt(ctx: WorkerContext, d: Deliverer, secrets: dict[str, list[str]], event: ClaimedEvent) -> AttemptRecord:
    receiver = receiver_of(event.url)
    wait = d.gate.enter(receiver)
    if wait is not None:  # its receiver is at its share, or paused after failures: try it later, no attempt spent
        return AttemptRecord(event.id, event.attempt, event.url, "deferred", None, 0, None, wait)
    answered = False
    try:
        result = attempt_delivery(
            ctx.settings,
            d.http,
            event_id=event.id,
            url=event.url,
            payload=event.payload,
            secrets=secrets[event.owner],
            attempt=event.attempt,
        )
        # Healthy enough not to pause: it answered, and not with "overloaded" or "broken".
        answered = result.status_code is not None and result.status_code < 500 and result.status_code != 429
    finally:
        d.gate.leave(receiver, ok=answered)
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


def deliver_batch(ctx: WorkerContext, d: Deliverer, event_ids: list[str]) -> Counter[str]:
    """Claim, attempt and record a batch of events; returns how many ended in each outcome."""
    s = ctx.settings
    with ctx.db.begin() as conn:
        claimed = claim_events(conn, event_ids, lock_seconds=s.webhook_timeout_seconds + 30)
        secrets = signing_secrets(conn, [event.owner for event in claimed], d.box) if claimed else {}
    if not claimed:
        return Counter()  # already delivered, not yet due, or another worker has them
    records = d.run_all(lambda event: _attempt(ctx, d, secrets, event), claimed)
    with ctx.db.begin() as conn:
        written = record_attempts(conn, records)
        for owner, url in {(e.owner, e.url) for e, r in zip(claimed, records, strict=True) if r.outcome == "stopped"}:
            stop_url(conn, owner, url)
    outcomes = Counter(r.outcome for r in records)
    for record in records:
        if record.outcome not in ("delivered", "deferred"):
            log.info(
                "webhook attempt",
                extra={
                    "event_id": record.id,
                    "attempt": record.attempt,
                    "status_code": record.status_code,
                    "outcome": record.outcome,
                    "latency_ms": record.latency_ms,
                    "error": record.error,
                },
            )
    fenced = len(records) - len(written)
    log.info("webhook batch", extra={"events": len(event_ids), "claimed": len(claimed), **outcomes, "fenced": fenced})
    return outcomes


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
