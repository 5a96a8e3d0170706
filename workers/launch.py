"""`python -m workers.launch` (make worker): one Celery worker process per visible GPU, or one on the CPU.

The launcher never imports torch or initialises CUDA: it counts GPUs with nvidia-smi (or takes
ASSAY_GPUS), then starts each worker with CUDA_VISIBLE_DEVICES pinned, so every worker sees
exactly one device as cuda:0 and loads its models itself, after its own start (no fork after
CUDA). The solo pool runs batches in the worker's main process: there is no child to fork.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

from config import Settings, get_settings
from config.settings import ROOT
from workers.supervisor import Supervisor


@dataclass(frozen=True)
class WorkerPlan:
    hostname: str
    queues: list[str]
    env: dict[str, str]
    threads: int

    def argv(self, python: str = sys.executable) -> list[str]:
        return [
            python, "-m", "celery", "-A", "workers.celery_app", "worker",
            "-P", "solo", "-c", "1",
            "-Q", ",".join(self.queues),
            "-n", self.hostname,
            "-E", "--without-gossip", "--without-mingle",
        ]  # fmt: skip


def detect_gpus(settings: Settings) -> list[str]:
    """GPU indices to use, without touching CUDA in this (parent) process."""
    if settings.device == "cpu":
        return []
    if settings.gpus:
        return [g.strip() for g in settings.gpus.split(",") if g.strip()]
    if not shutil.which("nvidia-smi"):
        return []
    listed = subprocess.run(
        ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"], capture_output=True, text=True, check=False
    )
    return (
        [line.strip() for line in listed.stdout.splitlines() if line.strip().isdigit()]
        if listed.returncode == 0
        else []
    )


def plan_workers(settings: Settings, gpus: list[str], cpu_count: int, families: list[str]) -> list[WorkerPlan]:
    """One worker per GPU, pinned and named `gpuN@%h`; or one CPU worker with threads = cores."""
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
        return [WorkerPlan("cpu0@%h", queues, env, threads)]
    threads = settings.torch_threads or max(1, cpu_count // len(gpus))
    return [
        WorkerPlan(
            f"gpu{index}@%h",
            queues,
            {
                "ASSAY_DEVICE": "cuda",
                "CUDA_VISIBLE_DEVICES": index,
                "ASSAY_TORCH_THREADS": str(threads),
                "ASSAY_WORKER_METRICS_PORT": str(port + n if port else 0),
            },
            threads,
        )
        for n, index in enumerate(gpus)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers.launch", description=__doc__)
    parser.add_argument("--families", default="text,audio", help="model families (queues) to serve, comma separated")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    args = parser.parse_args(argv)
    settings = get_settings()
    plans = plan_workers(settings, detect_gpus(settings), len(os.sched_getaffinity(0)), args.families.split(","))
    for plan in plans:
        print(f"[launch] {plan.hostname}: queues={','.join(plan.queues)} env={plan.env}", file=sys.stderr)
    if args.dry_run:
        return 0
    supervisor = Supervisor(ROOT)
    for plan in plans:
        supervisor.start(plan.hostname, plan.argv(), {**os.environ, **plan.env})
    return supervisor.wait()


if __name__ == "__main__":
    sys.exit(main())
