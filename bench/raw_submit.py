"""The raw limit of a submission: one committed INSERT of the job rows and one broker publish, no HTTP.

The API's figures mean little alone on shared machines (the same commit measured 831/s on one and
325/s on another); against what the same machine does with the same work minus Flask, gunicorn and
JSON, they say how much the front door costs. Runs the real store and broker code (store.api.
create_jobs, broker.publish.Publisher) from as many processes as the API has workers, each with as
many threads as the API gets connections per worker, for a fixed time.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from dataclasses import dataclass

TEXT = "The delivery was late but support was helpful."


@dataclass(frozen=True)
class RawRun:
    owner: str  # a tenant id (jobs.owner references tenants)
    processes: int
    threads: int
    jobs_per_commit: int
    seconds: float


def _process(run: RawRun, results: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    from broker.celery import make_celery
    from broker.connection import redis_client
    from broker.publish import Publisher
    from config.catalog import load_catalog
    from config.settings import load_settings
    from store.api import JobSpec, create_jobs
    from store.db import make_engine

    settings = load_settings()
    engine = make_engine(settings, pool_size=run.threads)
    publisher = Publisher(redis_client(settings), settings, load_catalog(), make_celery(settings))
    specs = [JobSpec("sentiment", {"text": TEXT}) for _ in range(run.jobs_per_commit)]
    counts = [0] * run.threads
    publisher.current_epoch()
    deadline = time.monotonic() + run.seconds

    def loop(index: int) -> None:
        while time.monotonic() < deadline:
            with engine.begin() as conn:
                created = create_jobs(conn, run.owner, specs, publisher.known_epoch)
            publisher.jobs([(row["id"], row["analysis"]) for row in created.rows])
            counts[index] += len(created.rows)

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(run.threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    engine.dispose()
    results.put(sum(counts))


def raw_jobs_per_second(run: RawRun) -> float:
    """Jobs per second over all processes (spawned: they read settings from the environment)."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    procs = [context.Process(target=_process, args=(run, results)) for _ in range(run.processes)]
    for proc in procs:
        proc.start()
    total = sum(results.get(timeout=run.seconds + 120) for _ in procs)
    for proc in procs:
        proc.join(30)
    return total / run.seconds
