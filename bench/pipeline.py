"""Pipeline efficiency: how much of the model's own throughput survives HTTP, Celery and PostgreSQL.

    .venv/bin/python -m bench.pipeline [--jobs 2000] [--analysis sentiment]

Pre-submits N jobs with no worker running (through the batch endpoint, then again one request
per job, then through the batch endpoint with max batch size 1), starts the worker, and measures
drain throughput (jobs / (last completed_at - first started_at), read from PostgreSQL) and
latency percentiles. In the same run it times the same model called directly through models/ at
the same batch size. Efficiency = pipeline / raw; speed-up = batched / max-batch-1 pipeline.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import Engine, func, select

from bench.harness import Bench, bench_stack, record, table
from bench.texts import messages
from config.catalog import load_catalog
from models.registry import EngineRegistry
from store.tables import LIVE_STATUSES, jobs
from tests.support import Client, wait_for


def raw_model(bench: Bench) -> EngineRegistry:
    """The worker's text models, loaded and warmed in this process."""
    from models.runtime import configure_threads

    configure_threads(bench.settings.torch_threads)
    registry = EngineRegistry(bench.settings, load_catalog())
    registry.load({"text"})
    registry.warm_up()
    return registry


def raw_throughput(registry: EngineRegistry, analysis: str, texts: list[str], size: int, repeats: int = 3) -> float:
    """The model alone, through models/, in batches of `size`: jobs/s (median of `repeats`)."""
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        for start in range(0, len(texts), size):
            registry.predict_text([(analysis, t) for t in texts[start : start + size]])
        rates.append(len(texts) / (time.perf_counter() - started))
    return statistics.median(rates)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def submit(client: Client, analysis: str, texts: list[str], how: str) -> list[str]:
    if how == "batch":
        ids: list[str] = []
        for start in range(0, len(texts), 1000):
            body = {"jobs": [{"analysis": analysis, "input": {"text": t}} for t in texts[start : start + 1000]]}
            response = client.post("/v1/jobs/batch", json=body)
            response.raise_for_status()
            ids += [j["id"] for j in response.json()["data"]]
        return ids
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda t: client.submit(t, analysis=analysis)["id"], texts))


def wait_drained(db: Engine, timeout: float) -> None:
    """Until no job in the bench's private database is queued or running: one count a second.

    The benchmark's own polling competes with the worker for the same two cores; fetching every id's
    status three times a second cost ~3 % of a core here and as much again in PostgreSQL."""
    live = select(func.count()).select_from(jobs).where(jobs.c.status.in_(LIVE_STATUSES))

    def drained() -> bool:
        with db.connect() as conn:
            return conn.execute(live).scalar_one() == 0

    wait_for(drained, timeout, interval=1.0, what="the queue to drain")


def drain(bench: Bench, analysis: str, texts: list[str], how: str, **worker_env: str) -> dict[str, float]:
    """Submit everything first, then start a worker and time how fast it empties the queue."""
    _, url = bench.stack.api()
    client = Client(url, bench.key())
    ids = submit(client, analysis, texts, how)
    worker = bench.stack.worker(f"bench-{how}-{len(bench.stack.procs)}", **worker_env)
    wait_drained(bench.db, timeout=1800)
    worker.stop()
    with bench.db.connect() as conn:
        rows = conn.execute(
            select(jobs.c.status, jobs.c.created_at, jobs.c.started_at, jobs.c.completed_at).where(jobs.c.id.in_(ids))
        ).all()
        first = conn.execute(select(func.min(jobs.c.started_at)).where(jobs.c.id.in_(ids))).scalar_one()
        last = conn.execute(select(func.max(jobs.c.completed_at)).where(jobs.c.id.in_(ids))).scalar_one()
    assert all(r.status == "succeeded" for r in rows)
    in_worker = [(r.completed_at - r.started_at).total_seconds() * 1000 for r in rows]
    sizes = [r["size"] for r in worker.log_events("batch processed")]
    return {
        "jobs_per_s": len(ids) / (last - first).total_seconds(),
        "p50_ms": percentile(in_worker, 0.5),
        "p95_ms": percentile(in_worker, 0.95),
        "p99_ms": percentile(in_worker, 0.99),
        "mean_batch": statistics.mean(sizes) if sizes else 0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pipeline", description=__doc__)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--unbatched-jobs", type=int, default=500, help="jobs for the max-batch-1 run (slow)")
    parser.add_argument("--analysis", default="sentiment")
    args = parser.parse_args(argv)
    texts = messages(args.jobs)

    with bench_stack() as bench:
        size = bench.settings.max_batch_size
        registry = raw_model(bench)
        raw_before = raw_throughput(registry, args.analysis, texts, size)
        raw_one = raw_throughput(registry, args.analysis, texts[: args.unbatched_jobs], 1)
        batched = drain(bench, args.analysis, texts, "batch")
        # A shared machine's speed drifts over minutes: the raw model is timed on both sides of the drain.
        raw_after = raw_throughput(registry, args.analysis, texts, size)
        raw = statistics.mean([raw_before, raw_after])
        singles = drain(bench, args.analysis, messages(args.jobs, seed=8), "single")
        one = drain(bench, args.analysis, messages(args.unbatched_jobs, seed=9), "batch", ASSAY_MAX_BATCH_SIZE="1")

    rows = [
        [f"raw model, models/ (batch {size})", f"{raw:.0f}", "", "", "", f"{size}", "1.00"],
        ["raw model, models/ (batch 1)", f"{raw_one:.0f}", "", "", "", "1", f"{raw_one / raw:.2f}"],
        *[
            [
                name,
                f"{r['jobs_per_s']:.0f}",
                f"{r['p50_ms']:.0f}",
                f"{r['p95_ms']:.0f}",
                f"{r['p99_ms']:.0f}",
                f"{r['mean_batch']:.1f}",
                f"{r['jobs_per_s'] / raw:.2f}",
            ]
            for name, r in (
                (f"pipeline, batch endpoint, max batch {size}", batched),
                (f"pipeline, one request per job, max batch {size}", singles),
                ("pipeline, batch endpoint, max batch 1", one),
            )
        ],
    ]
    text = table(["run", "jobs/s", "p50 ms", "p95 ms", "p99 ms", "mean batch", "÷ raw"], rows)
    text += (
        f"\n\nefficiency (batched pipeline / raw model): **{batched['jobs_per_s'] / raw:.0%}**"
        f" · speed-up (batched / max-batch-1 pipeline): **{batched['jobs_per_s'] / one['jobs_per_s']:.1f}×**"
        f" · the model's own batching gain (raw batch {size} / raw batch 1): {raw / raw_one:.1f}×"
    )
    notes = (
        f"{args.jobs} jobs ({args.unbatched_jobs} for max batch 1), analysis `{args.analysis}`, pre-submitted with "
        "no worker running; drain = jobs / (last completed_at - first started_at) from PostgreSQL; latencies are "
        "started_at → completed_at per job (in the worker, queue wait excluded). Raw model at batch "
        f"{size}: {raw_before:.0f} jobs/s before the batched drain and {raw_after:.0f} after it; ÷ raw uses their mean."
    )
    record("Pipeline efficiency (CPU)", "python -m bench.pipeline " + " ".join(argv or sys.argv[1:]), text, notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
