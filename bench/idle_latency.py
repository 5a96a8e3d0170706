"""Idle latency: one job at a time on an idle system, submit → result, against its floor.

    .venv/bin/python -m bench.idle_latency [--jobs 50]

The floor is one model call of batch size 1, timed in this process through models/: the worker runs
a lone job at once (tasks/eager_batches.py). Target: p50 within one model call + 20 ms.
The client uses GET ?wait=, so the answer arrives when the worker's Redis notification does.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from bench.harness import bench_stack, record, table
from bench.pipeline import percentile
from bench.texts import messages
from config.catalog import load_catalog
from models.registry import EngineRegistry
from tests.support import Client


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.idle_latency", description=__doc__)
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--analysis", default="sentiment")
    args = parser.parse_args(argv)
    texts = messages(args.jobs, seed=11)

    with bench_stack() as bench:
        registry = EngineRegistry(bench.settings, load_catalog())
        registry.load({"text"})
        registry.warm_up()
        model_ms = []
        for text in texts:
            started = time.perf_counter()
            registry.predict_text([(args.analysis, text)])
            model_ms.append((time.perf_counter() - started) * 1000)
        del registry

        bench.stack.worker("idle")
        _, url = bench.stack.api()
        client = Client(url, bench.key())
        client.get(f"/v1/jobs/{client.submit('warm up')['id']}", params={"wait": 10})
        latencies = []
        for text in texts:
            started = time.perf_counter()
            job = client.submit(text, analysis=args.analysis)
            done = client.get(f"/v1/jobs/{job['id']}", params={"wait": 10}).json()
            latencies.append((time.perf_counter() - started) * 1000)
            assert done["status"] == "succeeded", done
            time.sleep(0.05)
        wait_ms = bench.settings.max_batch_wait_ms

    model = statistics.median(model_ms)
    floor = model  # a lone job on an idle queue runs at once (tasks/eager_batches.py): no batch wait
    rows = [
        ["model call, batch 1 (median)", f"{model:.1f}", "", ""],
        ["max batch wait (ASSAY_MAX_BATCH_WAIT_MS, not waited when idle)", f"{wait_ms}", "", ""],
        [
            "submit → result through the API",
            f"{percentile(latencies, 0.5):.1f}",
            f"{percentile(latencies, 0.95):.1f}",
            f"{percentile(latencies, 0.5) - floor:+.1f}",
        ],
    ]
    text = table(["", "p50 ms", "p95 ms", "over one model call (p50)"], rows)
    notes = (
        f"{args.jobs} jobs, one at a time, POST /v1/jobs then GET ?wait=10; target: p50 ≤ one model call + 20 ms. "
        "The worker flushes as soon as its queues are empty, so a lone job does not wait for company; what is "
        "left over the model call is HTTP, the INSERT, the publish, the claim, the write and the notification."
    )
    record("Idle latency (CPU)", "python -m bench.idle_latency " + " ".join(argv or sys.argv[1:]), text, notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
