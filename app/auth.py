"""Bearer API keys. Every /v1 route needs one; the tenant it belongs to scopes every query."""

from __future__ import annotations

import time

from flask import g, request

from app.errors import ApiError
from app.ratelimits import check_request
from app.resources import Resources, resources
from store.keys import hash_key, tenant_for_key

_cache: dict[str, tuple[str, float]] = {}
_CACHE_MAX = 10_000


def _unauthorized(code: str, message: str) -> ApiError:
    return ApiError(401, code, message, headers={"WWW-Authenticate": 'Bearer realm="assay"'})


def authenticate() -> None:
    """Set `g.tenant` from the Authorization header or raise 401; then count the request (429 past the limit).

    A short in-process cache (ASSAY_AUTH_CACHE_SECONDS) spares a query per request; a revoked key
    stops working within that time.
    """
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    if not header:
        raise _unauthorized("missing_api_key", "send 'Authorization: Bearer <api key>'")
    if scheme.lower() != "bearer" or not key.strip():
        raise _unauthorized("invalid_authorization", "the Authorization header must be 'Bearer <api key>'")
    key = key.strip()
    digest = hash_key(key)
    now = time.monotonic()
    cached = _cache.get(digest)
    g.key_id = digest[:32]  # what rate limits count per key (app/ratelimits.py)
    if cached and cached[1] > now:
        g.tenant = cached[0]
        check_request()
        return
    svc = resources()
    with svc.db.connect() as conn:
        tenant = tenant_for_key(conn, key)
    if tenant is None:
        _cache.pop(digest, None)
        raise _unauthorized("invalid_api_key", "the API key is unknown or revoked")
    if len(_cache) >= _CACHE_MAX:
        _cache.clear()
    _cache[digest] = (tenant, now + svc.settings.auth_cache_seconds)
    g.tenant = tenant
    check_request()


def still_valid(svc: Resources, key: str) -> bool:
    """Whether the key an open event stream was authenticated with still works (not revoked): asked by the
    stream at most once per ASSAY_AUTH_CACHE_SECONDS, through the same cache as requests."""
    digest = hash_key(key)
    cached = _cache.get(digest)
    if cached and cached[1] > time.monotonic():
        return True
    with svc.db.connect() as conn:
        tenant = tenant_for_key(conn, key)
    if tenant is None:
        _cache.pop(digest, None)
        return False
    _cache[digest] = (tenant, time.monotonic() + svc.settings.auth_cache_seconds)
    return True
