"""The result cache and in-flight coalescing, in PostgreSQL beside the jobs they serve.

Intake (app.result_cache) asks two questions per cache key, in one statement (`lookup`): is a job
with this key still queued or running (then the new job attaches to it), and is there a finished
result (then the new job is complete at once). The job-finished path (pipeline.lifecycle) calls
`settle` in the same transaction that finished a source job: its result enters the cache and its
attached jobs finish with it; a canceled source hands its attached jobs to the oldest of them, which
then runs.

Locks keep intake and finishing from missing each other: intake takes `FOR SHARE SKIP LOCKED` on the
source it attaches to, so a source being finished right now is skipped (the new job then runs
itself: a rare duplicate, never an orphan), and a source intake holds cannot finish until the
attached row is committed, so `settle`'s next statement sees it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Connection, DateTime, RowMapping, String, func, select, text
from sqlalchemy.dialects.postgresql import JSONB

from store.tables import JobStatus, result_cache


@dataclass(frozen=True)
class CachedResult:
    """A finished result intake can complete a job with."""

    result: dict[str, Any]
    started_at: datetime | None
    completed_at: datetime
    source_job_id: str


# A PL/pgSQL function (migration 0009): its plan is made once per connection, where this statement
# inline was parsed and planned on every submission (~1.0 ms per 100-job batch against ~0.4 ms). It
# probes each key on its own (LATERAL), an index probe per key whatever the statistics say.
_LOOKUP_SQL = text(
    "SELECT live, key, job_id, result, started_at, completed_at FROM assay_cache_lookup(:keys, :ttl)"
).columns(
    live=Boolean,
    key=String,
    job_id=String,
    result=JSONB,
    started_at=DateTime(timezone=True),
    completed_at=DateTime(timezone=True),
)
# The same question inline, for a database not yet at migration 0009: a rollout may start the new API
# before its migrate Job has finished, and the missing function was a 500 on every cached submission.
# Remove with the release after the one that added 0009 (expand, then contract: docs/OPERATIONS.md).
_INLINE_LOOKUP_SQL = text(
    """
    WITH live AS (
        SELECT j.cache_key, j.id FROM unnest(string_to_array(:keys, ',')) AS wanted(key),
        LATERAL (
            SELECT cache_key, id FROM jobs
            WHERE cache_key = wanted.key AND status IN ('queued', 'running') AND coalesced_into IS NULL
            FOR SHARE SKIP LOCKED
        ) j
    ), cached AS (
        SELECT c.* FROM unnest(string_to_array(:keys, ',')) AS wanted(key),
        LATERAL (
            SELECT key, result, started_at, completed_at, source_job_id FROM result_cache
            WHERE key = wanted.key AND completed_at > now() - make_interval(secs => :ttl)
            FOR SHARE SKIP LOCKED
        ) c
    )
    SELECT true AS live, cache_key AS key, id AS job_id, NULL::jsonb AS result,
           NULL::timestamptz AS started_at, NULL::timestamptz AS completed_at FROM live
    UNION ALL
    SELECT false, key, source_job_id, result, started_at, completed_at FROM cached
    """
)
_FUNCTION_EXISTS_SQL = text("SELECT to_regprocedure('assay_cache_lookup(text, double precision)') IS NOT NULL")
#: How often a process that found no function asks again (once found, it never asks again).
FUNCTION_RECHECK_SECONDS = 10.0


@dataclass
class _FunctionSeen:
    found: bool = False
    next_check: float = 0.0


_function = _FunctionSeen()


def _lookup_statement(conn: Connection) -> Any:
    """The function's call once the database has it, else the inline statement."""
    if not _function.found and time.monotonic() >= _function.next_check:
        _function.found = bool(conn.execute(_FUNCTION_EXISTS_SQL).scalar_one())
        _function.next_check = time.monotonic() + FUNCTION_RECHECK_SECONDS
    return _LOOKUP_SQL if _function.found else _INLINE_LOOKUP_SQL


def lookup(conn: Connection, keys: list[str], ttl_seconds: float) -> tuple[dict[str, str], dict[str, CachedResult]]:
    """({cache key: id of a queued or running job that will compute it}, {cache key: a result younger than
    the TTL}), every row found share-locked: both questions in one round trip, as intake asks them for
    every submission. An entry whose key also has a live source is locked too and not used (the live
    source is preferred); an erasure waits for the request to end."""
    if not keys:
        return {}, {}
    sources: dict[str, str] = {}
    hits: dict[str, CachedResult] = {}
    # One comma-joined string, split by PostgreSQL: psycopg2 quotes a list element by element, which
    # took a third of the lookup's time on a 100-job batch. Keys are hex digests: no commas.
    joined = ",".join(keys)
    for row in conn.execute(_lookup_statement(conn), {"keys": joined, "ttl": float(ttl_seconds)}).mappings():
        if row["live"]:
            if row["key"] not in sources or row["job_id"] < sources[row["key"]]:
                sources[row["key"]] = row["job_id"]  # any live one computes the same answer; pick one deterministically
        else:
            hits[row["key"]] = CachedResult(row["result"], row["started_at"], row["completed_at"], row["job_id"])
    return sources, hits


def lookup_statement(conn: Connection) -> str:
    """The function's query as migrated, with `%(keys)s` and `%(ttl)s` for its arguments: what the test of
    its plan and bench.scale EXPLAIN (a plan made inside a function does not show in EXPLAIN of the call)."""
    source = conn.execute(text("SELECT prosrc FROM pg_proc WHERE proname = 'assay_cache_lookup'")).scalar_one()
    query = source[source.index("RETURN QUERY") + len("RETURN QUERY") : source.rindex(";")]
    return query.replace("p_keys", "%(keys)s").replace("p_ttl", "%(ttl)s")


@dataclass
class Settled:
    """What finishing some source jobs did to the jobs attached to them."""

    followers: list[RowMapping] = field(default_factory=list)  # attached jobs that finished with their source
    heirs: list[tuple[str, str]] = field(default_factory=list)  # (job_id, analysis): attached jobs that now run


_REMEMBER = """
    INSERT INTO result_cache (key, analysis, source_job_id, result, bytes, started_at, completed_at)
    SELECT j.cache_key, j.analysis, j.id, j.result, octet_length(j.result::text), j.started_at, j.completed_at
    FROM jobs j
    WHERE j.id = ANY(:ids) AND j.status = 'succeeded' AND j.cache_key IS NOT NULL
      AND j.coalesced_into IS NULL AND j.erased_at IS NULL AND j.result IS NOT NULL
    ON CONFLICT (key) DO UPDATE SET source_job_id = EXCLUDED.source_job_id, result = EXCLUDED.result,
        bytes = EXCLUDED.bytes, started_at = EXCLUDED.started_at, completed_at = EXCLUDED.completed_at
    WHERE result_cache.completed_at < EXCLUDED.completed_at
"""

_FOLLOW = """
    UPDATE jobs f SET status = s.status, result = s.result, error_code = s.error_code,
           error_message = s.error_message, started_at = s.started_at, completed_at = s.completed_at,
           lease_expires_at = NULL
    FROM jobs s
    WHERE f.coalesced_into = s.id AND s.id = ANY(:ids) AND s.status IN ('succeeded', 'failed')
      AND f.status IN ('queued', 'running')
    RETURNING f.id, f.analysis, f.status, f.attempts, f.created_at, f.error_code, f.webhook IS NOT NULL AS hooked
"""
_FOLLOW_SQL = text(_FOLLOW)
# Both in one round trip (the finishing write waits for it): the INSERT reads only the sources, the
# UPDATE only their followers, so neither needs to see what the other did.
_REMEMBER_AND_FOLLOW_SQL = text(f"WITH remembered AS ({_REMEMBER} RETURNING 1) {_FOLLOW}")

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
        settled.followers = list(conn.execute(_REMEMBER_AND_FOLLOW_SQL, {"ids": done}).mappings())
    elif done:
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
