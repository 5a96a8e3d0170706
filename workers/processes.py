"""The process table: every kind of process Assay runs, described once.

`make run` (deploy/local/run.py), the worker launcher, `python -m workers.role KIND` (what the
container images and manifests run), the tests' stack and the benchmarks all start processes from
here; a test checks deploy/docker-compose.yml and deploy/k8s against it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Literal

from config import Settings

ProcessKind = Literal["api", "worker", "tabular", "maintenance", "webhooks", "flower", "migrate"]
#: Kinds a deployment runs continuously (migrate runs once before a rollout).
SERVICE_KINDS: tuple[ProcessKind, ...] = ("api", "worker", "tabular", "maintenance", "webhooks", "flower")
#: Kinds that must never run more than one replica: the maintenance worker embeds the beat scheduler.
SINGLETON_KINDS: tuple[ProcessKind, ...] = ("maintenance",)

_CELERY = ("-m", "celery", "-A", "workers.celery_app")
_WORKER_FLAGS = ("--without-gossip", "--without-mingle")


@dataclass(frozen=True)
class ProcessSpec:
    """One process: its kind, a name (a Celery hostname for workers), its arguments after `python`, and
    environment to add to the inherited one."""

    kind: ProcessKind
    name: str
    args: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    threads: int | None = None  # an inference worker's intra-op threads

    def argv(self, python: str = sys.executable) -> list[str]:
        return [python, *self.args]


def api_process() -> ProcessSpec:
    """gunicorn with gevent workers; bind, worker count and the rest come from settings (gunicorn.conf.py)."""
    return ProcessSpec("api", "api", ("-m", "gunicorn", "-c", "gunicorn.conf.py", "app.wsgi:app"))


def inference_process(hostname: str, queues: list[str], env: dict[str, str] | None = None) -> ProcessSpec:
    """A model worker: solo pool (batches run in the process that loaded the models; nothing forks after
    CUDA), task events on so Flower sees it."""
    args = (*_CELERY, "worker", "-P", "solo", "-c", "1", "-Q", ",".join(queues), "-n", hostname, "-E", *_WORKER_FLAGS)
    threads = int(env["ASSAY_TORCH_THREADS"]) if env and "ASSAY_TORCH_THREADS" in env else None
    return ProcessSpec("worker", hostname, args, dict(env or {}), threads)


def tabular_process(queue: str, metrics_port: int, hostname: str = "tabular@%h") -> ProcessSpec:
    """Call-record analyses (`tabular` queue) on the CPU, never on a GPU worker and never behind GPU work.

    One job per message and no prefetch beyond it (a job already uses every core through DuckDB), so a
    second tabular worker takes the next file; its metrics port sits past the GPU workers' ports.
    """
    args = (*_CELERY, "worker", "-P", "solo", "-c", "1", "-Q", queue, "-n", hostname, "-E", *_WORKER_FLAGS)
    port = metrics_port
    env = {
        "ASSAY_DEVICE": "cpu",
        "CUDA_VISIBLE_DEVICES": "",
        "ASSAY_MAX_BATCH_SIZE": "1",
        "ASSAY_WORKER_PREFETCH_BATCHES": "1",
        "ASSAY_WORKER_METRICS_PORT": str(port + 64 if port and port + 64 <= 65535 else 0),
    }
    return ProcessSpec("tabular", hostname, args, env)


def maintenance_process(queue: str, schedule_file: str, metrics_port: int = 0) -> ProcessSpec:
    """Sweeps and retention, scheduled by the beat embedded in this worker: run exactly one.

    Its /metrics (the result cache's size, which its sweep measures) is on `metrics_port` + 66, past the
    webhook deliverer's + 65; 0: none."""
    args = (*_CELERY, "worker", "-P", "threads", "-c", "2", "-Q", queue, "-n", "maintenance@%h", "-B",
            "-s", schedule_file, *_WORKER_FLAGS)  # fmt: skip
    port = metrics_port + 66 if metrics_port and metrics_port + 66 <= 65535 else 0
    return ProcessSpec("maintenance", "maintenance@%h", args, {"ASSAY_WORKER_METRICS_PORT": str(port)})


def webhooks_process(queue: str, concurrency: int, hostname: str = "webhooks@%h", metrics_port: int = 0) -> ProcessSpec:
    """Webhook deliveries on a gevent pool, on their own queue: a hanging receiver never stalls a model.

    `concurrency` is batches in flight (each delivers its events concurrently); a small prefetch leaves
    the rest of the queue to the other webhook workers when there are several. Its /metrics (delivery
    attempts by outcome) is on `metrics_port` + 65, past the tabular worker's + 64; 0: none.
    """
    args = (*_CELERY, "worker", "-P", "gevent", "-c", str(concurrency), "--prefetch-multiplier", "2",
            "-Q", queue, "-n", hostname, *_WORKER_FLAGS)  # fmt: skip
    port = metrics_port + 65 if metrics_port and metrics_port + 65 <= 65535 else 0
    return ProcessSpec("webhooks", hostname, args, {"ASSAY_WORKER_METRICS_PORT": str(port)})


def flower_process(port: int, address: str, user: str, password: str) -> ProcessSpec:
    """Flower; its credentials travel in the environment (FLOWER_BASIC_AUTH), never on the command line."""
    args = (*_CELERY, "flower", f"--port={port}", f"--address={address}")
    return ProcessSpec("flower", "flower", args, {"FLOWER_BASIC_AUTH": f"{user}:{password}"})


def migrate_process() -> ProcessSpec:
    return ProcessSpec("migrate", "migrate", ("-m", "store.migrate", "upgrade"))


def inference_processes(settings: Settings, gpus: list[str], cpu_count: int, families: list[str]) -> list[ProcessSpec]:
    """One worker per GPU, pinned with CUDA_VISIBLE_DEVICES and named `gpuN@%h`; or one CPU worker whose
    intra-op threads use every core."""
    queues = [settings.queue_name(f) for f in families]
    port = settings.worker_metrics_port
    if not gpus:
        threads = settings.torch_threads or cpu_count
        env = {
            "ASSAY_DEVICE": "cpu",
            "ASSAY_TORCH_THREADS": str(threads),
            "CUDA_VISIBLE_DEVICES": "",
            "ASSAY_WORKER_METRICS_PORT": str(port),
        }
        return [inference_process("cpu0@%h", queues, env)]
    threads = settings.torch_threads or max(1, cpu_count // len(gpus))
    return [
        inference_process(
            f"gpu{index}@%h",
            queues,
            {
                "ASSAY_DEVICE": "cuda",
                "CUDA_VISIBLE_DEVICES": index,
                "ASSAY_TORCH_THREADS": str(threads),
                "ASSAY_WORKER_METRICS_PORT": str(port + n if port else 0),
            },
        )
        for n, index in enumerate(gpus)
    ]


def service_processes(settings: Settings, gpus: list[str], cpu_count: int) -> list[ProcessSpec]:
    """Everything one host runs for the whole service, in start order (what `make run` starts)."""
    return [
        api_process(),
        *inference_processes(settings, gpus, cpu_count, list(settings.worker_families)),
        tabular_process(settings.queue_name("tabular"), settings.worker_metrics_port),
        maintenance_process(
            settings.maintenance_queue,
            str(settings.var_dir / "celerybeat-schedule"),
            metrics_port=settings.worker_metrics_port,
        ),
        webhooks_process(
            settings.webhook_queue, settings.webhook_batches_in_flight, metrics_port=settings.worker_metrics_port
        ),
        flower_process(settings.flower_port, settings.flower_address, settings.flower_user, settings.flower_password),
    ]


def role_process(kind: ProcessKind, settings: Settings, gpus: list[str], cpu_count: int) -> list[ProcessSpec]:
    """The processes one container of this kind runs (a GPU pod: one worker per GPU it sees)."""
    if kind == "worker":
        return inference_processes(settings, gpus, cpu_count, list(settings.worker_families))
    if kind == "migrate":
        return [migrate_process()]
    by_kind = {spec.kind: spec for spec in service_processes(settings, gpus, cpu_count)}
    return [by_kind[kind]]
