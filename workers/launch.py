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

from config import Settings, get_settings
from config.host import usable_cpus
from config.settings import ROOT, run_command
from workers.processes import ProcessSpec, inference_processes
from workers.supervisor import Supervisor


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


def plan_workers(settings: Settings, gpus: list[str], cpu_count: int, families: list[str]) -> list[ProcessSpec]:
    """One worker per GPU, pinned and named `gpuN@%h`; or one CPU worker with threads = cores."""
    return inference_processes(settings, gpus, cpu_count, families)


def supervise(specs: list[ProcessSpec]) -> int:
    """Start every process and stop them all when one exits or we are signalled."""
    supervisor = Supervisor(ROOT)
    for spec in specs:
        supervisor.start(spec.name, spec.argv(), {**os.environ, **spec.env})
    return supervisor.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers.launch", description=__doc__)
    parser.add_argument("--families", default=None, help="model families (queues) to serve, comma separated")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    args = parser.parse_args(argv)
    settings = get_settings()
    families = args.families.split(",") if args.families else list(settings.worker_families)
    plans = plan_workers(settings, detect_gpus(settings), usable_cpus(), families)
    for plan in plans:
        print(f"[launch] {plan.name}: queues={','.join(families)} env={plan.env}", file=sys.stderr)
    if args.dry_run:
        return 0
    return supervise(plans)


if __name__ == "__main__":
    sys.exit(run_command(main))
