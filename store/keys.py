"""Tenants and API keys. Keys are shown once at creation and stored only as a SHA-256 hash."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import Connection, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from store.ids import new_id
from store.tables import api_keys, tenants

KEY_PREFIX = "assay_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class IssuedKey:
    key_id: str
    tenant_id: str
    tenant_name: str
    secret: str  # the only time the plain key exists


def ensure_tenant(conn: Connection, name: str) -> str:
    """The tenant's id, creating the tenant on first use."""
    conn.execute(pg_insert(tenants).values(id=new_id("ten"), name=name).on_conflict_do_nothing(index_elements=["name"]))
    return conn.execute(select(tenants.c.id).where(tenants.c.name == name)).scalar_one()


def create_key(conn: Connection, tenant_name: str, label: str = "") -> IssuedKey:
    tenant_id = ensure_tenant(conn, tenant_name)
    secret = KEY_PREFIX + secrets.token_urlsafe(24)
    key_id = new_id("key", 10)
    conn.execute(
        api_keys.insert().values(
            id=key_id, tenant_id=tenant_id, key_hash=hash_key(secret), prefix=secret[:12], label=label
        )
    )
    return IssuedKey(key_id=key_id, tenant_id=tenant_id, tenant_name=tenant_name, secret=secret)


def revoke_key(conn: Connection, key_id: str) -> bool:
    result = conn.execute(
        update(api_keys).where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None)).values(revoked_at=func.now())
    )
    return result.rowcount == 1


def tenant_for_key(conn: Connection, secret: str) -> str | None:
    """The tenant id a live key belongs to, or None."""
    return conn.execute(
        select(api_keys.c.tenant_id).where(api_keys.c.key_hash == hash_key(secret), api_keys.c.revoked_at.is_(None))
    ).scalar_one_or_none()


def list_keys(conn: Connection) -> list[dict[str, object]]:
    rows = conn.execute(
        select(
            api_keys.c.id,
            tenants.c.name,
            api_keys.c.prefix,
            api_keys.c.label,
            api_keys.c.created_at,
            api_keys.c.revoked_at,
        )
        .join(tenants, tenants.c.id == api_keys.c.tenant_id)
        .order_by(api_keys.c.created_at)
    ).mappings()
    return [dict(r) for r in rows]
