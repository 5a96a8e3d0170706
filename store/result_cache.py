"""The result cache and in-flight coalescing, in PostgreSQL beside the jobs they serve.

Intake (app.result_cache) asks two questions per cache key: is a job with this key still queued or
running (then the new job attaches to it), and is there a finished result (then the new job is
complete at once). The job-finished path (pipeline.lifecycle) calls `settle` in the same transaction
that finished a source job: its result enters the cache and its attached jobs finish with it; a
canceled source hands its attached jobs to the oldest of them, which then runs.

Locks keep intake and finishing from missing each other: intake takes `FOR SHARE SKIP LOCKED` on the
source it attaches to, so a source being finished right now is skipped (the new job then runs
itself: a rare duplicate, never an orphan), and a source intake holds cannot finish until the
attached row is committed, so `settle`'s next statement sees it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, RowMapping, func, select, text

from store.db import interval
from store.tables import JobStatus, jobs, result_cache


@dataclass(frozen=True)
class CachedResult:
    """A finished result intake can complete a job with."""

    result: dict[str, Any]
    started_at: datetime | None
    completed_at: datetime
    source_job_id: str


def live_sources(conn: Connection, keys: list[str]) -> dict[str, str]:
    """{cache key: id of a queued or running job that will compute it}, each such job share-locked."""
    if not keys:
        return {}
    rows = conn.execute(
        select(jobs.c.cache_key, jobs.c.id)
        .where(
            jobs.c.cache_key.in_(keys),
            jobs.c.status.in_((JobStatus.QUEUED, JobStatus.RUNNING)),
            jobs.c.coalesced_into.is_(None),
        )
        .order_by(jobs.c.id)
        .with_for_update(read=True, skip_locked=True)
    )
    found: dict[str, str] = {}
    for key, job_id in rows:
        found.setdefault(key, job_id)
    return found


def cached_results(conn: Connection, keys: list[str], ttl_seconds: float) -> dict[str, CachedResult]:
    """{cache key: result} for entries younger than the TTL, share-locked so an erasure waits for us."""
    if not keys:
        return {}
    rows = conn.execute(
        select(result_cache)
        .where(result_cache.c.key.in_(keys), result_cache.c.completed_at > func.now() - interval(ttl_seconds))
        .with_for_update(read=True, skip_locked=True)
    ).mappings()
    return {r["key"]: CachedResult(r["result"], r["started_at"], r["completed_at"], r["source_job_id"]) for r in rows}


@dataclass
class Settled:
    """What finishing some source jobs did to the jobs attached to them."""

    followers: list[RowMapping] = field(default_factory=list)  # attached jobs that finished with their source
    heirs: list[tuple[str, str]] = field(default_factory=list)  # (job_id, analysis): attached jobs that now run


_REMEMBER_SQL = text(
    """
    INSERT INTO result_cache (key, analysis, source_job_id, result, bytes, started_at, completed_at)
    SELECT j.cache_key, j.analysis, j.id, j.result, octet_length(j.result::text), j.started_at, j.completed_at
    FROM jobs j
    WHERE j.id = ANY(:ids) AND j.status = 'succeeded' AND j.cache_key IS NOT NULL
      AND j.coalesced_into IS NULL AND j.erased_at IS NULL AND j.result IS NOT NULL
    ON CONFLICT (key) DO UPDATE SET source_job_id = EXCLUDED.source_job_id, result = EXCLUDED.result,
        bytes = EXCLUDED.bytes, started_at = EXCLUDED.started_at, completed_at = EXCLUDED.completed_at
    WHERE result_cache.completed_at < EXCLUDED.completed_at
    """
)

_FOLLOW_SQL = text(
    """
    UPDATE jobs f SET status = s.status, result = s.result, error_code = s.error_code,
           error_message = s.error_message, started_at = s.started_at, completed_at = s.completed_at,
           lease_expires_at = NULL
    FROM jobs s
    WHERE f.coalesced_into = s.id AND s.id = ANY(:ids) AND s.status IN ('succeeded', 'failed')
      AND f.status IN ('queued', 'running')
    RETURNING f.id, f.analysis, f.status, f.attempts, f.created_at, f.error_code, f.webhook IS NOT NULL AS hooked
    """
)

_HEIRS_SQL = text(
    """
    WITH heirs AS (
        SELECT DISTINCT ON (f.coalesced_into) f.id, f.coalesced_into AS source
        FROM jobs f
        WHERE f.coalesced_into = ANY(:ids) AND f.status = 'queued'
        ORDER BY f.coalesced_into, f.created_at, f.id
    ), promoted AS (
        UPDATE jobs SET coalesced_into = NULL, enqueued_at = now(), publish_epoch = :epoch
        FROM heirs WHERE jobs.id = heirs.id
        RETURNING jobs.id, jobs.analysis, heirs.source
    ), moved AS (
        UPDATE jobs f SET coalesced_into = p.id FROM promoted p
        WHERE f.coalesced_into = p.source AND f.id <> p.id AND f.status = 'queued'
        RETURNING f.id
    )
    SELECT id, analysis FROM promoted
    """
)


def settle(conn: Connection, finished: list[tuple[str, str]], *, remember: bool, publish_epoch: str | None) -> Settled:
    """In the transaction that finished these jobs ((job_id, status) pairs): cache and hand on their outcome.

    A succeeded source's result enters the cache (if `remember`); a succeeded or failed source's
    attached jobs finish with the same result or error; a canceled source's attached jobs pass to
    the oldest of them, which is published (stamped `publish_epoch`) and runs: cancelling one job
    never cancels the others.
    """
    settled = Settled()
    done = [job_id for job_id, status in finished if status in (JobStatus.SUCCEEDED, JobStatus.FAILED)]
    canceled = [job_id for job_id, status in finished if status == JobStatus.CANCELED]
    succeeded = [job_id for job_id, status in finished if status == JobStatus.SUCCEEDED]
    if remember and succeeded:
        conn.execute(_REMEMBER_SQL, {"ids": succeeded})
    if done:
        settled.followers = list(conn.execute(_FOLLOW_SQL, {"ids": done}).mappings())
    if canceled:
        rows = conn.execute(_HEIRS_SQL, {"ids": canceled, "epoch": publish_epoch})
        settled.heirs = [(r.id, r.analysis) for r in rows]
    return settled


@dataclass(frozen=True)
class Held:
    entries: int
    bytes: int


_PRUNE_SQL = text(
    """
    DELETE FROM result_cache WHERE key IN (
        SELECT key FROM (
            SELECT key, completed_at,
                   row_number() OVER (ORDER BY completed_at DESC, key) AS n,
                   sum(bytes) OVER (ORDER BY completed_at DESC, key) AS running
            FROM result_cache
        ) ranked
        WHERE completed_at < now() - make_interval(secs => :ttl) OR n > :max_entries OR running > :max_bytes
    )
    """
)


def prune(conn: Connection, *, ttl_seconds: float, max_entries: int, max_bytes: int) -> tuple[int, Held]:
    """Drop expired entries, then the oldest beyond the size bounds; (how many went, what is held now)."""
    removed = conn.execute(
        _PRUNE_SQL, {"ttl": ttl_seconds, "max_entries": max_entries, "max_bytes": max_bytes}
    ).rowcount
    count, size = conn.execute(select(func.count(), func.coalesce(func.sum(result_cache.c.bytes), 0))).one()
    return removed, Held(int(count), int(size))
