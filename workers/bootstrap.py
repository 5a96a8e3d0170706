"""Worker start-up: logging, then models loaded and warmed in the process that will use them."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, signals

from config import get_settings
from config.logging import configure_logging

log = logging.getLogger(__name__)
#: Families served without a model (call records): their workers never import torch.
TABULAR_FAMILIES = {"tabular"}


def _families(queues: list[str], prefix: str) -> set[str]:
    return {q[len(prefix) + 1 :] for q in queues if q.startswith(prefix + ".")}


def preload_models(consumer_queues: list[str]) -> set[str]:
    """Load (and warm up) the engines of the queues this worker consumes, before it takes work.

    Runs in the worker process itself (solo or threads pool), so CUDA, if used, is first
    touched here and never in a parent that forks.
    """
    from pipeline.context import get_context

    ctx = get_context()
    served = {analysis.family for analysis in ctx.catalog.values()}
    families = _families(consumer_queues, ctx.settings.queue_prefix) & served
    if not families:
        log.info("worker ready", extra={"families": [], "queues": consumer_queues})
        return families
    if families <= TABULAR_FAMILIES:  # call records: DuckDB, no torch in this process
        import duckdb

        log.info("worker ready", extra={"families": sorted(families), "duckdb": duckdb.__version__})
        return families
    from models.runtime import configure_threads

    threads = configure_threads(ctx.settings.torch_threads)
    ctx.engines.load(families)
    if ctx.settings.warmup:
        ctx.engines.warm_up()
    from telemetry.metrics import MODEL_LOAD

    for model, seconds in ctx.engines.load_seconds.items():
        MODEL_LOAD.labels(model).set(seconds)
    log.info("worker ready", extra={"families": sorted(families), "torch_threads": threads})
    return families


def serve_metrics(consumer_queues: list[str]) -> None:
    """This worker's /metrics on ASSAY_WORKER_METRICS_PORT (the launcher gives each worker its own)."""
    from prometheus_client import start_http_server

    from pipeline.context import get_context
    from telemetry.metrics import worker_registry

    ctx = get_context()
    if not ctx.settings.worker_metrics_port:
        return
    try:
        start_http_server(
            ctx.settings.worker_metrics_port,
            addr=ctx.settings.worker_metrics_address,
            registry=worker_registry(ctx.redis, consumer_queues),
        )
    except OSError as exc:
        log.warning("metrics port unavailable", extra={"port": ctx.settings.worker_metrics_port, "error": str(exc)})
        return
    log.info("metrics served", extra={"port": ctx.settings.worker_metrics_port})


def install(app: Celery) -> None:
    @signals.setup_logging.connect(weak=False)
    def _logging(**_: Any) -> None:
        configure_logging(get_settings())

    @signals.worker_init.connect(weak=False)
    def _green_psycopg(sender: Any = None, **_: Any) -> None:
        """Under the gevent pool (webhook worker) psycopg2 must yield to the loop while it waits."""
        pool = getattr(sender, "pool_cls", None)
        if pool is not None and "gevent" in str(getattr(pool, "__module__", pool)):
            from config.green import green_psycopg

            green_psycopg(get_settings())

    @signals.worker_ready.connect(weak=False)
    def _ready(sender: Any = None, **_: Any) -> None:
        queues = [q.name for q in sender.app.amqp.queues.consume_from.values()] if sender else []
        if preload_models(queues):  # inference workers; maintenance and webhook workers have no models
            from pipeline.context import get_context
            from telemetry.flower import FlowerEvents

            # celery-batches sends no per-message events: the job-finished path tells Flower per job.
            if get_context().settings.flower_task_events:
                get_context().lifecycle.flower = FlowerEvents(sender.app, sender.hostname)
            serve_metrics(queues)
        elif {get_settings().webhook_queue, get_settings().maintenance_queue} & set(queues):
            serve_metrics(queues)  # the deliverer: attempts by outcome; the sweeper: the result cache's size
