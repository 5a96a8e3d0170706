"""What erasure clears, in one place: DELETE /v1/jobs/{id} and retention erase a job the same way."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, delete, func

from store.tables import job_blobs, jobs, result_cache, webhook_events

#: Column values an erased job keeps: the bare record stays (id, analysis, status, timestamps,
#: attempts, error code) for accounting; input, result, error message and metadata go.
ERASED_VALUES: dict[str, Any] = {
    "input": None,
    "result": None,
    "error_message": None,
    "metadata": {},
    "cache_key": None,  # a hash of the input: it goes with the input
    "request_hash": None,  # a hash of the request body, input included: anyone with a guess could confirm it
    "erased_at": func.coalesce(jobs.c.erased_at, func.now()),
}


def delete_dependents(conn: Connection, job_ids: list[str]) -> None:
    """An erased job's uploaded input, webhook events (their payloads hold results) and the cache entry of
    the result it computed go with it: an identical job submitted later misses."""
    if job_ids:
        conn.execute(delete(result_cache).where(result_cache.c.source_job_id.in_(job_ids)))
        conn.execute(delete(job_blobs).where(job_blobs.c.job_id.in_(job_ids)))
        conn.execute(delete(webhook_events).where(webhook_events.c.job_id.in_(job_ids)))
