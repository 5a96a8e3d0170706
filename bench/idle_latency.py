"""Idle latency: one job at a time on an idle system, submit → result, against its floor.

    .venv/bin/python -m bench.idle_latency [--jobs 100]

The floor is one model call of batch size 1, timed in this process through models/: the worker runs
a lone job at once (tasks/eager_batches.py). Target: p50 within one model call + 20 ms.
The client uses GET ?wait=, so the answer arrives when the worker's Redis notification does.

The model call is timed twice: back to back, and spaced like the jobs (one call, then the gap the job
loop leaves). On 2 CPU cores the spaced call is 20-30 % slower (torch's threads have gone to sleep and
the caches hold other processes' data): that is the model call a lone job on an idle system meets, so
the overhead is reported against both, and the target is read against the spaced one.
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

#: Pause between one job's result and the next submission: the system is idle when each job arrives.
GAP_SECONDS = 0.05
#: Between spaced model calls: the pause plus about the rest of a job's path, so the model idles as long as
#: it does in the worker between two lone jobs.
SPACED_CALL_GAP_SECONDS = GAP_SECONDS + 0.04


def _model_calls(registry: EngineRegistry, analysis: str, texts: list[str], gap: float) -> list[float]:
    """Milliseconds of each batch-1 model call, `gap` seconds apart."""
    took = []
    for text in texts:
        started = time.perf_counter()
        registry.predict_text([(analysis, text)])
        took.append((time.perf_counter() - started) * 1000)
        time.sleep(gap)
    return took


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.idle_latency", description=__doc__)
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--analysis", default="sentiment")
    args = parser.parse_args(argv)
    texts = messages(args.jobs, seed=11)

    with bench_stack() as bench:
        registry = EngineRegistry(bench.settings, load_catalog())
        registry.load({"text"})
        registry.warm_up()
        model_ms = _model_calls(registry, args.analysis, texts, gap=0.0)
        spaced_ms = _model_calls(registry, args.analysis, texts, gap=SPACED_CALL_GAP_SECONDS)
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
            time.sleep(GAP_SECONDS)
        wait_ms = bench.settings.max_batch_wait_ms

    # A lone job on an idle queue runs at once (tasks/eager_batches.py): no batch wait in the floor.
    model, spaced = statistics.median(model_ms), statistics.median(spaced_ms)
    p50 = percentile(latencies, 0.5)
    rows = [
        ["model call, batch 1, back to back", f"{model:.1f}", f"{percentile(model_ms, 0.95):.1f}", "", ""],
        [
            f"model call, batch 1, {SPACED_CALL_GAP_SECONDS * 1000:.0f} ms apart (as a lone job meets it)",
            f"{spaced:.1f}",
            f"{percentile(spaced_ms, 0.95):.1f}",
            "",
            "",
        ],
        ["max batch wait (ASSAY_MAX_BATCH_WAIT_MS, not waited when idle)", f"{wait_ms}", "", "", ""],
        [
            "submit → result through the API",
            f"{p50:.1f}",
            f"{percentile(latencies, 0.95):.1f}",
            f"{p50 - spaced:+.1f}",
            f"{p50 - model:+.1f}",
        ],
    ]
    headers = ["", "p50 ms", "p95 ms", "over the spaced model call (p50)", "over the back-to-back call (p50)"]
    text = table(headers, rows)
    notes = (
        f"{args.jobs} jobs, one at a time, POST /v1/jobs then GET ?wait=10; target: p50 ≤ one model call + 20 ms. "
        "The worker flushes as soon as its queues are empty, so a lone job does not wait for company; what is "
        "left over the model call is HTTP, the INSERT, the publish, the claim, the write and the notification."
    )
    record("Idle latency (CPU)", "python -m bench.idle_latency " + " ".join(argv or sys.argv[1:]), text, notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
