"""Webhook delivery: Standard Webhooks signatures, a PostgreSQL-driven retry schedule, every attempt recorded.

Runs on its own queue and worker (gevent pool), never on an inference worker, so a receiver that
hangs cannot stall a model (replicate/cog#2229).
"""

from __future__ import annotations

import email.utils
import ipaddress
import json
import logging
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests
from celery import Celery
from requests.adapters import HTTPAdapter
from standardwebhooks import Webhook
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from config import Settings
from config.celery import DELIVER_TASK, WEBHOOK_SWEEP_TASK
from store import webhooks as store
from tasks.context import WorkerContext, get_context
from tasks.urlguard import address_blocked

log = logging.getLogger(__name__)

USER_AGENT = "Assay-Webhooks/1.0"


# --- the connect-time guard ----------------------------------------------------------------------


class BlockedAddressError(OSError):
    """Raised on a connected socket whose peer is not public (DNS rebinding, or a changed record)."""


class _GuardedConnectionMixin:
    def _new_conn(self) -> Any:
        sock = super()._new_conn()  # type: ignore[misc]
        peer = sock.getpeername()[0]
        if address_blocked(peer):
            sock.close()
            raise BlockedAddressError(f"refused to deliver to non-public address {ipaddress.ip_address(peer)}")
        return sock


class _GuardedHTTPConnection(_GuardedConnectionMixin, HTTPConnection):
    pass


class _GuardedHTTPSConnection(_GuardedConnectionMixin, HTTPSConnection):
    pass


class _GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


class _GuardedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _GuardedHTTPPool, "https": _GuardedHTTPSPool}


def make_session(allow_private: bool) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # no proxies from the environment: the guard must see the real peer
    if not allow_private:
        session.mount("http://", _GuardedAdapter())
        session.mount("https://", _GuardedAdapter())
    session.headers["User-Agent"] = USER_AGENT
    return session


# --- one attempt -----------------------------------------------------------------------------------


def sign(secrets: list[str], msg_id: str, when: datetime, body: str) -> str:
    """Space-separated v1 signatures: the current secret's, plus the previous one's during a rotation."""
    return " ".join(Webhook(secret).sign(msg_id, when, body) for secret in secrets)


def retry_after_seconds(value: str | None, now: float) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class AttemptResult:
    outcome: str  # delivered | pending (retry) | failed | stopped
    status_code: int | None
    latency_ms: int
    error: str | None
    next_attempt_in: float | None


def classify(
    settings: Settings, attempt: int, status_code: int | None, error: str | None, retry_after: float | None
) -> tuple[str, float | None]:
    """2xx delivered; 410 stop; anything else a failure, retried on schedule (Retry-After honoured)."""
    if status_code is not None and 200 <= status_code < 300:
        return "delivered", None
    if status_code == 410:
        return "stopped", None
    schedule = settings.webhook_schedule_seconds
    if attempt > len(schedule):
        return "failed", None
    delay = schedule[attempt - 1]
    delay *= 1 + random.uniform(-settings.webhook_jitter, settings.webhook_jitter)
    if status_code in (429, 503) and retry_after is not None:
        delay = max(delay, min(retry_after, settings.webhook_max_retry_after_seconds))
    return "pending", delay


def attempt_delivery(settings: Settings, session: requests.Session, event: store.ClaimedEvent) -> AttemptResult:
    body = json.dumps(event.payload, separators=(",", ":"), sort_keys=True)
    now = datetime.now(UTC)
    headers = {
        "content-type": "application/json",
        "webhook-id": event.id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": sign(event.secrets, event.id, now, body),
    }
    started = time.perf_counter()
    status_code, error, retry_after = None, None, None
    try:
        response = session.post(
            event.url, data=body.encode(), headers=headers, timeout=settings.webhook_timeout_seconds,
            allow_redirects=False,
        )  # fmt: skip
        status_code = response.status_code
        response.close()
        if 300 <= status_code < 400:
            error = f"HTTP {status_code}: redirects are not followed (Location: {response.headers.get('location')})"
        elif not 200 <= status_code < 300:
            error = f"HTTP {status_code}"
            retry_after = retry_after_seconds(response.headers.get("retry-after"), time.time())
    except requests.Timeout:
        error = f"timeout: no response within {settings.webhook_timeout_seconds:g} s"
    except requests.RequestException as exc:
        reason = exc.__context__ or exc
        error = f"connection error: {type(reason).__name__}: {reason}"[:500]
    latency_ms = int((time.perf_counter() - started) * 1000)
    outcome, next_in = classify(settings, event.attempt, status_code, error, retry_after)
    return AttemptResult(outcome, status_code, latency_ms, error, next_in)


def deliver(ctx: WorkerContext, session: requests.Session, event_id: str) -> str:
    """Claim the event, try once, record the attempt. Returns the event's new status (or `skipped`)."""
    s = ctx.settings
    with ctx.db.begin() as conn:
        event = store.claim_event(conn, event_id, lock_seconds=s.webhook_timeout_seconds + 30)
    if event is None:
        return "skipped"  # already delivered, not yet due, or another worker has it
    result = attempt_delivery(s, session, event)
    with ctx.db.begin() as conn:
        store.record_attempt(
            conn,
            event,
            status_code=result.status_code,
            latency_ms=result.latency_ms,
            error=result.error,
            outcome=result.outcome,
            next_attempt_in=result.next_attempt_in,
        )
        if result.outcome == "stopped":
            store.stop_url(conn, event.owner, event.url)
    log.info(
        "webhook attempt",
        extra={
            "event_id": event.id,
            "attempt": event.attempt,
            "status_code": result.status_code,
            "outcome": result.outcome,
            "latency_ms": result.latency_ms,
            "error": result.error,
        },
    )
    return result.outcome


def publish_deliveries(app: Celery, settings: Settings, event_ids: list[str]) -> None:
    """Hand events to the webhook workers (after the transaction that created them committed)."""
    if not event_ids:
        return
    with app.producer_or_acquire() as producer:
        for event_id in event_ids:
            app.send_task(DELIVER_TASK, args=[event_id], queue=settings.webhook_queue, producer=producer)


def publish_or_defer(app: Celery, settings: Settings, event_ids: list[str]) -> None:
    """Publish from the inference path without ever failing it: a lost publish is re-sent by the sweep."""
    try:
        publish_deliveries(app, settings, event_ids)
    except Exception:
        log.warning("webhook publish deferred to the sweeper", exc_info=True, extra={"events": len(event_ids)})


def sweep_webhooks(app: Celery, ctx: WorkerContext) -> int:
    with ctx.db.begin() as conn:
        due = store.due_events(conn, ctx.settings.webhook_publish_grace_seconds)
    publish_deliveries(app, ctx.settings, due)
    if due:
        log.info("webhook sweep", extra={"published": len(due)})
    return len(due)


_sessions: dict[bool, requests.Session] = {}


def register_webhooks(app: Celery) -> None:
    @app.task(name=DELIVER_TASK, bind=True, acks_late=True, ignore_result=True)
    def deliver_task(self, event_id: str) -> str:
        ctx = get_context()
        allow = ctx.settings.webhook_allow_private
        session = _sessions.setdefault(allow, make_session(allow))
        return deliver(ctx, session, event_id)

    @app.task(name=WEBHOOK_SWEEP_TASK, bind=True, acks_late=False, ignore_result=True)
    def webhook_sweep_task(self) -> int:
        return sweep_webhooks(self.app, get_context())
