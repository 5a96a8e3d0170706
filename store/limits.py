"""Per-tenant overrides of the rate limits and quotas, and the count the queued-job quota is checked on."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from store.tables import JobStatus, jobs, tenant_limits

#: The settings a tenant may override; the column and the Settings field share the name.
OVERRIDABLE = (
    "rate_requests",
    "rate_requests_window_seconds",
    "rate_jobs_per_minute",
    "max_open_waits_per_key",
    "tenant_max_queued_jobs",
)


def overrides_for(conn: Connection, tenant: str) -> dict[str, int]:
    """The tenant's overrides (only the columns that are set)."""
    row = conn.execute(select(tenant_limits).where(tenant_limits.c.tenant_id == tenant)).mappings().first()
    if row is None:
        return {}
    return {name: row[name] for name in OVERRIDABLE if row[name] is not None}


def set_overrides(conn: Connection, tenant: str, values: dict[str, int | None]) -> None:
    """Set (or, with None, clear) some of a tenant's overrides; the others stay as they are."""
    unknown = set(values) - set(OVERRIDABLE)
    if unknown:
        raise ValueError(f"not overridable: {sorted(unknown)}")
    given: dict[str, Any] = dict(values)
    conn.execute(
        pg_insert(tenant_limits)
        .values(tenant_id=tenant, **given)
        .on_conflict_do_update(index_elements=["tenant_id"], set_={**given, "updated_at": func.now()})
    )


def queued_jobs(conn: Connection, tenant: str) -> int:
    """The tenant's jobs waiting for a worker (ix_jobs_owner_status_created answers it)."""
    return conn.execute(
        select(func.count()).select_from(jobs).where(jobs.c.owner == tenant, jobs.c.status == JobStatus.QUEUED)
    ).scalar_one()
