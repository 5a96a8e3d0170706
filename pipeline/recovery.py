"""The maintenance worker's work: recover lost or abandoned jobs, and erase old ones.

PostgreSQL is the source of truth; broker messages are only hints. Recovery re-publishes only
what the broker really lost (see store.maintenance.sweep and broker.publish on the epoch).
"""

from __future__ import annotations

import logging
from collections import defaultdict

import redis

from broker.inflight import held_ids, waiting
from pipeline.context import WorkerContext
from pipeline.lifecycle import Change
from store.maintenance import Drained, expire_jobs, sweep
from store.result_cache import prune
from store.tables import JobStatus
from telemetry import metrics

log = logging.getLogger(__name__)


def drained_families(ctx: WorkerContext) -> list[Drained]:
    """The model families whose queue is empty, with the ids their workers still hold unacked."""
    by_family: dict[str, list[str]] = defaultdict(list)
    for name, config in ctx.catalog.items():
        by_family[config.family].append(name)
    drained = []
    for family, analyses in by_family.items():
        queue = ctx.settings.queue_name(family)
        if waiting(ctx.redis, queue) == 0:
            try:
                held = held_ids(ctx.redis, queue, ctx.settings.requeue_after_seconds)
                drained.append(Drained(analyses, held))
            except OverflowError:
                continue  # workers hold a great deal: nothing of this family is treated as lost now
    return drained


def sweep_once(ctx: WorkerContext) -> dict[str, int]:
    """Re-publish lost or abandoned jobs and fail those out of attempts; returns counts."""
    s = ctx.settings
    try:
        epoch: str | None = ctx.lifecycle.publisher.current_epoch()
        drained = drained_families(ctx)
    except redis.RedisError:
        log.warning("broker unreachable: sweeping leases only, publishing nothing", exc_info=True)
        epoch, drained = None, []
    with ctx.lifecycle.transaction(epoch) as unit:
        found = sweep(
            unit.conn,
            epoch=epoch,
            drained=drained,
            requeue_after_seconds=s.requeue_after_seconds,
            max_attempts=s.max_attempts,
            limit=s.sweep_limit,
        )
        unit.finished(
            [
                Change(job_id, analysis, JobStatus.FAILED, error_code="attempts_exhausted")
                for job_id, analysis in found.exhausted
            ]
        )
        known = [(job_id, analysis) for job_id, analysis in found.republish if analysis in ctx.catalog]
        unit.publish_jobs(known)
    counts = {"republished": len(known), "exhausted": len(found.exhausted), "cache_pruned": prune_cache(ctx)}
    if known or found.exhausted or counts["cache_pruned"]:
        log.info("sweep", extra=counts)
    return counts


def prune_cache(ctx: WorkerContext) -> int:
    """Hold the result cache to its TTL and size bounds; publish what it holds as gauges."""
    s = ctx.settings
    with ctx.db.begin() as conn:
        removed, held = prune(
            conn, ttl_seconds=s.cache_ttl_seconds, max_entries=s.cache_max_entries, max_bytes=s.cache_max_bytes
        )
    metrics.CACHE_ENTRIES.set(held.entries)
    metrics.CACHE_BYTES.set(held.bytes)
    return removed


def retention_once(ctx: WorkerContext) -> int:
    """Erase finished jobs older than ASSAY_RETENTION_DAYS, chunk by chunk, each chunk its own transaction."""
    s = ctx.settings
    if not s.retention_days:
        return 0
    erased = 0
    while True:
        with ctx.db.begin() as conn:
            ids = expire_jobs(conn, s.retention_days * 86_400, s.retention_chunk)
        erased += len(ids)
        if len(ids) < s.retention_chunk:
            break
    if erased:
        log.info("retention", extra={"erased": erased, "days": s.retention_days})
    return erased
