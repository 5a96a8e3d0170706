"""The worker launcher's plan: one pinned worker per GPU, or one CPU worker; the parent never touches CUDA."""

from __future__ import annotations

import subprocess
import sys

from config.settings import ROOT, load_settings
from workers.launch import detect_gpus, plan_workers


def test_two_gpus_give_two_pinned_workers() -> None:
    settings = load_settings(worker_metrics_port=9100, torch_threads=0)  # explicit: the session env sets both
    plans = plan_workers(settings, ["0", "1"], cpu_count=16, families=["text", "audio"])
    assert [p.name for p in plans] == ["gpu0@%h", "gpu1@%h"]
    assert [p.env["CUDA_VISIBLE_DEVICES"] for p in plans] == ["0", "1"]
    assert all(p.env["ASSAY_DEVICE"] == "cuda" for p in plans)
    assert [p.env["ASSAY_WORKER_METRICS_PORT"] for p in plans] == ["9100", "9101"]
    assert all(p.threads == 8 for p in plans)
    argv = plans[1].argv("python")
    assert argv[argv.index("-P") + 1] == "solo" and argv[argv.index("-n") + 1] == "gpu1@%h"
    assert argv[argv.index("-Q") + 1] == f"{settings.queue_prefix}.text,{settings.queue_prefix}.audio"


def test_no_gpu_gives_one_cpu_worker_using_every_core() -> None:
    (plan,) = plan_workers(load_settings(torch_threads=0), [], cpu_count=2, families=["text"])
    assert plan.name == "cpu0@%h" and plan.env["ASSAY_DEVICE"] == "cpu"
    assert plan.env["CUDA_VISIBLE_DEVICES"] == "" and plan.threads == 2


def test_gpu_list_comes_from_settings_and_cpu_device_wins() -> None:
    assert detect_gpus(load_settings(gpus="0, 1")) == ["0", "1"]
    assert detect_gpus(load_settings(gpus="0,1", device="cpu")) == []


def test_the_launcher_process_never_imports_torch() -> None:
    code = "import sys, workers.launch as l; l.main(['--dry-run']); print('torch' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"ASSAY_GPUS": "0,1", "PATH": "/usr/bin:/bin"},
        check=True,
    )
    assert done.stdout.strip() == "False"
    assert "gpu0@%h" in done.stderr and "gpu1@%h" in done.stderr and "CUDA_VISIBLE_DEVICES': '1'" in done.stderr
