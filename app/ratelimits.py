"""Per-key rate limits, per-key caps on open long-polls and event streams, and a per-tenant queued-job quota.

app/backpressure.py protects the shared queues from everyone at once; this module keeps one tenant (or one
leaked key) from taking all of it. Three different questions, three different tools:

- *How fast* (requests per window, jobs per minute; a batch entry counts as a job): the `limits` library's
  moving window in Redis, so every API process shares one count per key and "the 101st request inside the
  window" is refused exactly, not approximately as a fixed or sliding-counter window would.
- *How many at once* (open `?wait` long-polls plus `GET /v1/events` streams per key): a Redis sorted set per
  key whose members expire by score, so a process killed mid-stream leaks its slots for a minute at most.
- *How much waiting* (a tenant's queued jobs): counted in PostgreSQL (the source of truth), cached for a
  second per process with what this process admitted since added, as backpressure does for queue depth.

Every figure comes from settings and can be overridden per tenant (table tenant_limits, re-read every
`tenant_limits_cache_seconds`). Refusals are 429 with Retry-After and the RateLimit-* headers of the IETF
draft; every authenticated answer carries RateLimit-Limit/Remaining/Reset for the request limit.

Redis unreachable: the rate and slot checks admit (a dependency outage must never turn into refusals or
500s; intake needs only PostgreSQL), say so in the log, and skip Redis for `REDIS_BACKOFF_SECONDS`, so a
Redis that hangs costs one request its timeout, not every request.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace

import redis
from flask import Flask, Response, current_app, g
from limits import RateLimitItem, RateLimitItemPerMinute, RateLimitItemPerSecond
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter

from app.errors import ApiError
from app.resources import Resources, resources
from config import Settings
from store.limits import OVERRIDABLE, overrides_for, queued_jobs

log = logging.getLogger(__name__)

QUEUED_CACHE_SECONDS = 1.0
SLOT_LEASE_SECONDS = 60.0
REDIS_BACKOFF_SECONDS = 5.0  # an open stream renews its slot well within this (each heartbeat)

# Take a slot if fewer than ARGV[2] live ones: members scored by expiry, expired ones dropped first.
_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""


@dataclass(frozen=True)
class Limits:
    """The limits that apply to one tenant: settings, with its overrides."""

    rate_requests: int
    rate_requests_window_seconds: int
    rate_jobs_per_minute: int
    max_open_waits_per_key: int
    tenant_max_queued_jobs: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(**{name: getattr(settings, name) for name in OVERRIDABLE})

    @property
    def requests_item(self) -> RateLimitItem:
        return RateLimitItemPerSecond(self.rate_requests, self.rate_requests_window_seconds)

    @property
    def jobs_item(self) -> RateLimitItem:
        return RateLimitItemPerMinute(self.rate_jobs_per_minute)


class RateLimits:
    """One per API process (made in `init_app`, after the fork, like every other connection)."""

    def __init__(self, settings: Settings, client: redis.Redis) -> None:
        self.settings = settings
        self.enabled = settings.rate_limits_enabled
        self.defaults = Limits.from_settings(settings)
        prefix = f"{settings.queue_prefix}:limits"
        self._limiter = MovingWindowRateLimiter(
            RedisStorage(settings.redis_url, connection_pool=client.connection_pool, key_prefix=prefix)
        )
        self._redis = client
        self._slots_key = f"{prefix}:open:{{}}"
        self._acquire = client.register_script(_ACQUIRE)
        self._overrides: dict[str, tuple[Limits, float]] = {}
        self._queued: dict[str, tuple[int, float]] = {}
        self._redis_down_until = 0.0

    def redis_usable(self) -> bool:
        return time.monotonic() >= self._redis_down_until

    def redis_failed(self, what: str) -> None:
        self._redis_down_until = time.monotonic() + REDIS_BACKOFF_SECONDS
        log.warning("rate limits not checked: Redis unavailable", extra={"limit": what})

    # -- per-tenant figures --------------------------------------------------------------------------------
    def for_tenant(self, svc: Resources, tenant: str) -> Limits:
        now = time.monotonic()
        cached = self._overrides.get(tenant)
        if cached and cached[1] > now:
            return cached[0]
        with svc.db.connect() as conn:
            limits = replace(self.defaults, **overrides_for(conn, tenant))
        if len(self._overrides) > 10_000:
            self._overrides.clear()
        self._overrides[tenant] = (limits, now + self.settings.tenant_limits_cache_seconds)
        return limits

    # -- rates ---------------------------------------------------------------------------------------------
    def charge(self, item: RateLimitItem, key_id: str, cost: int, what: str) -> dict[str, str]:
        """Count `cost` against the key's window; the RateLimit-* headers, or 429 `rate_limited`.

        A request costing more than the whole window can never pass: 413 `batch_too_large`, not a 429
        that clients retry until they give up."""
        check_window(item, cost, what)
        if not self.redis_usable():
            return {}
        try:
            allowed = self._limiter.hit(item, what, key_id, cost=cost)
            stats = self._limiter.get_window_stats(item, what, key_id)
        except redis.RedisError:
            self.redis_failed(what)
            return {}
        reset = max(0, math.ceil(stats.reset_time - time.time()))
        headers = {
            "RateLimit-Limit": str(item.amount),
            "RateLimit-Remaining": str(stats.remaining),
            "RateLimit-Reset": str(reset),
            "RateLimit-Policy": f"{item.amount};w={item.get_expiry()}",
        }
        if allowed:
            return headers
        retry = max(1, reset)
        message = f"more than {item.amount} {what} per {item.get_expiry()} s for this API key; retry in {retry} s"
        raise ApiError(
            429,
            "rate_limited",
            message,
            {"limit": item.amount, "window_seconds": item.get_expiry(), "kind": what},
            headers={**headers, "RateLimit-Remaining": "0", "Retry-After": str(retry)},
        )

    # -- open long-polls and streams ----------------------------------------------------------------------
    def take_slot(self, key_id: str, limit: int, seconds: float) -> OpenSlot:
        """One of the key's `limit` open long-poll/stream slots for `seconds` (renewable), or 429 `too_many_open`.
        The caller releases it."""
        held = OpenSlot(self, key_id, uuid.uuid4().hex)
        if not held.take(limit, seconds):
            raise ApiError(
                429,
                "too_many_open",
                f"this API key already holds {limit} open long-polls or event streams",
                {"limit": limit},
                headers={"Retry-After": "1"},
            )
        return held

    # -- a tenant's queued jobs ----------------------------------------------------------------------------
    def check_queued(self, svc: Resources, tenant: str, adding: int) -> Callable[[], None]:
        """429 `tenant_queue_full` if `adding` more queued jobs would pass the tenant's quota; else they are
        counted into this process's cached figure at once, and what is returned takes them out again (for
        a request refused after all)."""
        quota = self.for_tenant(svc, tenant).tenant_max_queued_jobs
        check_quota_size(adding, quota)
        now = time.monotonic()
        cached = self._queued.get(tenant)
        if cached and now - cached[1] < QUEUED_CACHE_SECONDS:
            queued, read_at = cached
        else:
            with svc.db.connect() as conn:
                queued, read_at = queued_jobs(conn, tenant), now
        if queued + adding > quota:
            self._queued[tenant] = (queued, read_at)
            raise ApiError(
                429,
                "tenant_queue_full",
                f"this tenant has {queued} jobs waiting; its quota is {quota}: try again when some have run",
                {"queued": queued, "quota": quota, "adding": adding},
                headers={"Retry-After": "5"},
            )
        if len(self._queued) > 10_000:
            self._queued.clear()
        self._queued[tenant] = (queued + adding, read_at)

        def undo() -> None:
            current = self._queued.get(tenant)
            if current and current[1] == read_at:  # not re-read since: take this request's jobs out again
                self._queued[tenant] = (current[0] - adding, read_at)

        return undo


def check_window(item: RateLimitItem, cost: int, what: str) -> None:
    """413 `batch_too_large` for a request costing more than the key's whole window: it can never pass."""
    if cost > item.amount:
        rule = f"this API key may send {item.amount} {what} per {item.get_expiry()} s"
        raise _larger_than_allowed(cost, item.amount, rule, what)


def check_quota_size(count: int, quota: int) -> None:
    """413 `batch_too_large` for a request of more jobs than the tenant may ever have queued."""
    if count > quota:
        raise _larger_than_allowed(count, quota, f"this tenant may have {quota} jobs queued", "tenant_queued_jobs")


def _larger_than_allowed(count: int, limit: int, rule: str, kind: str) -> ApiError:
    return ApiError(
        413,
        "batch_too_large",
        f"{count} jobs in one request; {rule}: send them in smaller requests",
        {"limit": limit, "actual": count, "kind": kind},
    )


class OpenSlot:
    """One open long-poll or stream, counted in the key's Redis sorted set until released or expired."""

    def __init__(self, owner: RateLimits, key_id: str, member: str) -> None:
        self._owner, self._key, self._member = owner, owner._slots_key.format(key_id), member

    def take(self, limit: int, seconds: float) -> bool:
        if not self._owner.redis_usable():
            self._member = ""  # nothing held: renew and release do nothing
            return True
        now = time.time()
        try:
            return bool(
                self._owner._acquire(
                    keys=[self._key], args=[now, limit, now + seconds, self._member, math.ceil(seconds) + 60]
                )
            )
        except redis.RedisError:
            self._owner.redis_failed("open streams")
            self._member = ""
            return True

    def renew(self, seconds: float) -> None:
        if not self._member:
            return
        with suppress(redis.RedisError):
            self._owner._redis.zadd(self._key, {self._member: time.time() + seconds}, xx=True)

    def release(self) -> None:
        if not self._member:
            return
        with suppress(redis.RedisError):
            self._owner._redis.zrem(self._key, self._member)


def rate_limits() -> RateLimits:
    return current_app.extensions["assay.ratelimits"]


def check_request() -> None:
    """After authentication: count this request against the key's request limit (429 past it)."""
    limiter = rate_limits()
    if not limiter.enabled:
        return
    limits = limiter.for_tenant(resources(), g.tenant)
    g.ratelimit_headers = limiter.charge(limits.requests_item, g.key_id, 1, "requests")


def charge_jobs(count: int, check_queues: Callable[[], Callable[[], None]]) -> None:
    """Before creating `count` jobs: every refusal first, then the key's jobs-per-minute limit is charged.

    The order: what can never pass (413: more than the key's whole window, more than the tenant may have
    queued), then the shared queues (`check_queues`, backpressure's 503, which returns what counts the
    jobs in once admitted), then the tenant's queued-job quota (429), then the rate. The rate's window
    counts what it admits, so a request refused for anything else (a client retrying on `queue_full` or
    `tenant_queue_full`) must not spend the key's jobs on jobs never made."""
    limiter = rate_limits()
    if not limiter.enabled:
        check_queues()()
        return
    svc = resources()
    limits = limiter.for_tenant(svc, g.tenant)
    check_window(limits.jobs_item, count, "jobs")
    check_quota_size(count, limits.tenant_max_queued_jobs)
    count_in = check_queues()
    undo = limiter.check_queued(svc, g.tenant, count)
    try:
        limiter.charge(limits.jobs_item, g.key_id, count, "jobs")
    except ApiError:
        undo()
        raise
    count_in()


@contextmanager
def open_slot(seconds: float) -> Iterator[OpenSlot | None]:
    """Hold one of the key's open long-poll/stream slots while the block runs (at most `seconds` unless renewed)."""
    held = take_slot(seconds)
    try:
        yield held
    finally:
        if held is not None:
            held.release()


def take_slot(seconds: float) -> OpenSlot | None:
    """One of the key's open long-poll/stream slots, for a stream that outlives the view; None when limits are off."""
    limiter = rate_limits()
    if not limiter.enabled:
        return None
    limit = limiter.for_tenant(resources(), g.tenant).max_open_waits_per_key
    return limiter.take_slot(g.key_id, limit, seconds)


def init_app(app: Flask, settings: Settings, client: redis.Redis) -> None:
    app.extensions["assay.ratelimits"] = RateLimits(settings, client)

    @app.after_request
    def _ratelimit_headers(response: Response) -> Response:
        for name, value in g.get("ratelimit_headers", {}).items():
            response.headers.setdefault(name, value)
        return response
