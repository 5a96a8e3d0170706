"""Per-tenant webhook signing secrets, encrypted at rest: created on first use, read by the deliverer to
sign, shown and rotated by the API. Every previous secret keeps signing until its own grace period ends,
however many rotations happen meanwhile."""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from store.db import interval
from store.ids import new_webhook_secret
from store.secrets_box import SecretBox, SecretsKeyError
from store.tables import webhook_secrets

_CURRENT = webhook_secrets.c.expires_at.is_(None)
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SecretInfo:
    secret: str
    previous_expires_at: datetime | None  # the last of the previous secrets that still sign beside it


def _ensure(conn: Connection, tenant_id: str, box: SecretBox) -> None:
    conn.execute(
        pg_insert(webhook_secrets)
        .values(tenant_id=tenant_id, encrypted=box.encrypt(new_webhook_secret()))
        .on_conflict_do_nothing(index_elements=["tenant_id"], index_where=_CURRENT)
    )


def signing_secrets(conn: Connection, tenant_ids: list[str], box: SecretBox) -> dict[str, list[str]]:
    """Each tenant's live secrets, current first, for the `webhook-signature` header.

    A tenant whose current secret does not decrypt with ASSAY_SECRETS_KEYS (a key rotation half rolled
    out, a database restored under other keys) is left out, and a previous secret that does not decrypt
    is skipped: one tenant's secret raising for the whole batch stopped every tenant's deliveries."""
    for tenant_id in sorted(set(tenant_ids)):
        _ensure(conn, tenant_id, box)
    rows = conn.execute(
        select(webhook_secrets.c.tenant_id, webhook_secrets.c.encrypted)
        .where(
            webhook_secrets.c.tenant_id.in_(set(tenant_ids)),
            or_(_CURRENT, webhook_secrets.c.expires_at > func.now()),
        )
        .order_by(webhook_secrets.c.tenant_id, webhook_secrets.c.expires_at.desc().nulls_first())
    )
    found: dict[str, list[str]] = defaultdict(list)
    seen: set[str] = set()
    unreadable: set[str] = set()
    for tenant_id, encrypted in rows:
        current = tenant_id not in seen  # rows come current first
        seen.add(tenant_id)
        try:
            found[tenant_id].append(box.decrypt(encrypted))
        except SecretsKeyError:
            log.error("webhook secret does not decrypt", extra={"tenant_id": tenant_id, "current": current})
            if current:
                unreadable.add(tenant_id)
    return {tenant_id: secrets for tenant_id, secrets in found.items() if tenant_id not in unreadable}


def secret_info(conn: Connection, tenant_id: str, box: SecretBox) -> SecretInfo:
    _ensure(conn, tenant_id, box)
    current = conn.execute(
        select(webhook_secrets.c.encrypted).where(webhook_secrets.c.tenant_id == tenant_id, _CURRENT)
    ).scalar_one()
    until = conn.execute(
        select(func.max(webhook_secrets.c.expires_at)).where(
            webhook_secrets.c.tenant_id == tenant_id, webhook_secrets.c.expires_at > func.now()
        )
    ).scalar_one()
    return SecretInfo(box.decrypt(current), until)


def rotate_secret(conn: Connection, tenant_id: str, grace_seconds: float, box: SecretBox) -> SecretInfo:
    """A new current secret; every earlier one signs beside it for at most the grace period (0: none does,
    the rotation after a leak), or until its own earlier expiry."""
    _ensure(conn, tenant_id, box)
    until = func.now() + interval(grace_seconds)
    conn.execute(
        update(webhook_secrets).where(webhook_secrets.c.tenant_id == tenant_id, _CURRENT).values(expires_at=until)
    )
    conn.execute(
        update(webhook_secrets)
        .where(webhook_secrets.c.tenant_id == tenant_id, webhook_secrets.c.expires_at > until)
        .values(expires_at=until)
    )
    _ensure(conn, tenant_id, box)
    return secret_info(conn, tenant_id, box)


def reencrypt(conn: Connection, box: SecretBox, after_id: int, limit: int) -> tuple[int, int]:
    """Re-encrypt up to `limit` secrets with ids above `after_id` under the newest key; (how many, the last
    id done). The caller runs each chunk in its own transaction, so the service keeps running."""
    rows = conn.execute(
        select(webhook_secrets.c.id, webhook_secrets.c.encrypted)
        .where(webhook_secrets.c.id > after_id)
        .order_by(webhook_secrets.c.id)
        .limit(limit)
        .with_for_update()
    ).all()
    for secret_id, encrypted in rows:
        try:
            rotated = box.reencrypt(encrypted)
        except SecretsKeyError:
            tenant = conn.execute(
                select(webhook_secrets.c.tenant_id).where(webhook_secrets.c.id == secret_id)
            ).scalar_one()
            raise SecretsKeyError(
                f"webhook secret {secret_id} (tenant {tenant}) does not decrypt with any key in ASSAY_SECRETS_KEYS: "
                "add the key it was written under (after the new one) and run this again; nothing was re-encrypted "
                "in this chunk"
            ) from None
        conn.execute(update(webhook_secrets).where(webhook_secrets.c.id == secret_id).values(encrypted=rotated))
    return len(rows), (rows[-1][0] if rows else after_id)
