"""Job metrics (names prefixed `assay_`), shared by the API and the workers; HTTP metrics live in app/.

The API runs under several gunicorn workers, so prometheus-client's multiprocess mode is used
there (gunicorn.conf.py sets PROMETHEUS_MULTIPROC_DIR before any worker starts); each Celery
worker process serves its own registry on its own port.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)

JOBS_SUBMITTED = Counter("assay_jobs_submitted_total", "Jobs accepted by the API", ["analysis"])
JOBS_FINISHED = Counter("assay_jobs_finished_total", "Jobs that reached a final state", ["analysis", "status"])
JOBS_HANDED_BACK = Counter(
    "assay_jobs_handed_back_total",
    "Jobs a worker handed back for another attempt after a transient error (memory, disk)",
    ["analysis"],
)
QUEUE_WAIT = Histogram(
    "assay_queue_wait_seconds", "Submission to start of the run", ["analysis"], buckets=LATENCY_BUCKETS
)
INFERENCE = Histogram("assay_inference_seconds", "One model batch, end to end", ["family"], buckets=LATENCY_BUCKETS)
JOB_LATENCY = Histogram(
    "assay_job_latency_seconds", "Submission to result written", ["analysis"], buckets=LATENCY_BUCKETS
)
BATCH_SIZE = Histogram("assay_batch_size", "Jobs per model batch", ["family"], buckets=BATCH_BUCKETS)
SUBMISSION_GROUP = Histogram(
    "assay_submission_group_requests",
    "Single submissions written in one transaction by an API process (app/group_commit.py)",
    buckets=(1, 2, 4, 8, 16, 32, 64),
)
MODEL_LOAD = Gauge("assay_model_load_seconds", "Time to load a model", ["model"], multiprocess_mode="max")
# --- result cache (issue 17) ---
CACHE_LOOKUPS = Counter(
    "assay_cache_lookups_total",
    "Intake cache lookups: hit, miss or coalesced (attached to a live job)",
    ["analysis", "outcome"],
)
CACHE_ENTRIES = Gauge("assay_cache_entries", "Results held in the cache", multiprocess_mode="max")
CACHE_BYTES = Gauge("assay_cache_bytes", "Bytes of results held in the cache (as JSON)", multiprocess_mode="max")
GPU_MEMORY = Gauge("assay_gpu_memory_bytes", "GPU memory allocated by this worker", ["device"], multiprocess_mode="max")
# Issue 14 (Grafana dashboard): webhook attempts by outcome (delivered, deferred, failed, stopped, ...).
WEBHOOK_ATTEMPTS = Counter("assay_webhook_attempts_total", "Webhook delivery attempts by outcome", ["outcome"])

# --- call records (cdr_fraud) ---------------------------------------------------------------------
CDR_RECORDS = Counter("assay_cdr_records_total", "Call records read by cdr_fraud jobs that succeeded")
CDR_ALERTS = Counter("assay_cdr_alerts_total", "Callers flagged (alerts generated) by cdr_fraud jobs")
CDR_LAST_DETECTION = Gauge(
    "assay_cdr_last_detection_timestamp_seconds", "When a cdr_fraud detection last finished", multiprocess_mode="max"
)


def count_cdr(records: int, alerts: int) -> None:
    """A cdr_fraud job's result was written: count its records and alerts, and stamp the last detection."""
    CDR_RECORDS.inc(records)
    CDR_ALERTS.inc(alerts)
    CDR_LAST_DETECTION.set_to_current_time()


class QueueDepthCollector:
    """Queue length per queue, read from Redis at scrape time (Flower exports none: flower#1173)."""

    def __init__(self, client: redis.Redis, queues: list[str]) -> None:
        self.client = client
        self.queues = queues

    def collect(self) -> Any:
        family = GaugeMetricFamily("assay_queue_depth", "Messages waiting in a broker queue", labels=["queue"])
        try:
            pipe = self.client.pipeline(transaction=False)
            for queue in self.queues:
                pipe.llen(queue)
            for queue, depth in zip(self.queues, pipe.execute(), strict=True):
                family.add_metric([queue], float(depth))
        except redis.RedisError:
            log.warning("queue depth unavailable", exc_info=True)
        yield family


def record_gpu_memory() -> None:
    """Only in a process that already uses CUDA: never the first to touch it."""
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        GPU_MEMORY.labels(device=str(torch.cuda.current_device())).set(torch.cuda.memory_allocated())


def worker_registry(client: redis.Redis, queues: list[str]) -> CollectorRegistry:
    """The default registry plus queue depth, for a worker's own /metrics port."""
    from prometheus_client import REGISTRY

    REGISTRY.register(QueueDepthCollector(client, queues))
    return REGISTRY
