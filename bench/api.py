"""API submission throughput and latency with no worker consuming (wrk, from Debian's packages).

    .venv/bin/python -m bench.api [--seconds 15] [--connections 64]

Single submissions (POST /v1/jobs) and batch submissions (POST /v1/jobs/batch, 100 jobs each) at a
fixed concurrency, each beside the raw limit of the same work without HTTP (bench/raw_submit.py),
measured in the same run: the ratio is the figure to compare across machines. wrk is C and light,
so on two cores it steals less CPU from gunicorn than a Python load generator would; it still shares
the machine, which this table's numbers include.
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.cpu_split import CpuWindow, describe
from bench.harness import bench_stack, record, table
from bench.raw_submit import RawRun, raw_jobs_per_second
from store.keys import create_key

LUA = """
wrk.method = "{method}"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
{body}
local threads = 0
setup = function(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
local sent = 0
request = function()
  if template == nil then return wrk.format() end
  local body = template:gsub(UNIQUE, function()
    sent = sent + 1
    return NONCE .. "." .. tostring(tid) .. "." .. tostring(sent)
  end)
  return wrk.format(nil, nil, nil, body)
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %.3f %.3f %.3f\\n", summary.requests, summary.duration,
    summary.errors.status + summary.errors.connect + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000))
end
"""


#: The raw runs' processes import and connect before their clock starts; their CPU is sampled after that.
RAW_LEAD_SECONDS = 4.0
#: Replaced in each request's body by a token unique to that request (see run_wrk).
UNIQUE = "@@"
#: A submission's text: every request (and every job of a batch) gets its own.
TEXT = f"The delivery was late but support was helpful. (order {UNIQUE})"


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False, capture_output=True)
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk is needed: apt-get install wrk")
    return found


def run_wrk(wrk: str, url: str, key: str, body: dict | None, seconds: int, connections: int) -> dict[str, float]:
    """POST `body` (GET when None) to `url` for `seconds`; requests/s, errors, latency percentiles in ms.

    Every `UNIQUE` in the body is replaced, request by request, with a token no other request of this or
    any other run sends: distinct texts, as real traffic has (the same text would be coalesced by the
    result cache into one job, with no publish, which is not the work being measured)."""
    lua_body = ""
    if body is not None:
        nonce = secrets.token_hex(4)
        lua_body = f'UNIQUE = "{UNIQUE}"\nNONCE = "{nonce}"\ntemplate = [[{json.dumps(body)}]]'
    method = "GET" if body is None else "POST"
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(LUA.replace("{method}", method).replace("{key}", key).replace("{body}", lua_body))
    out = subprocess.run(
        [wrk, "-t", "2", "-c", str(connections), "-d", f"{seconds}s", "-s", script.name, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    Path(script.name).unlink()
    match = re.search(r"RESULT (\d+) (\d+) (\d+) ([\d.]+) ([\d.]+) ([\d.]+)", out)
    assert match, out
    requests_, micros, errors, p50, p95, p99 = match.groups()
    return {
        "rps": int(requests_) / (int(micros) / 1e6),
        "errors": int(errors),
        "p50": float(p50),
        "p95": float(p95),
        "p99": float(p99),
    }


def group_sizes(base: str) -> tuple[float, float]:
    """(count, sum) of the API's group-commit histogram: transactions written and requests in them."""
    import requests

    text = requests.get(f"{base}/metrics", timeout=10).text
    name = "assay_submission_group_requests"
    found = [re.search(rf"^{name}_{part} ([0-9.e+]+)$", text, re.M) for part in ("count", "sum")]
    return tuple(float(m.group(1)) if m else 0.0 for m in found)  # type: ignore[return-value]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.api", description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--batch-only", action="store_true", help="skip the single-submission rows")
    args = parser.parse_args(argv)
    wrk = ensure_wrk()
    single = {"analysis": "sentiment", "input": {"text": TEXT}}
    batch = {"jobs": [single] * args.batch_size}

    rows = []
    with bench_stack(ASSAY_MAX_QUEUE_DEPTH="100000000") as bench:
        _, url = bench.stack.api()
        single_proc, url_alone = bench.stack.api(ASSAY_GROUP_COMMIT_MAX="0")  # before: a transaction per request
        key = bench.key()
        run_wrk(wrk, f"{url}/v1/jobs", key, single, 3, 16)  # warm-up
        run_wrk(wrk, f"{url_alone}/v1/jobs", key, single, 3, 16)
        workers = bench.settings.api_workers
        with bench.db.begin() as conn:
            owner = create_key(conn, "raw-bench").tenant_id

        def raw(connections: int, per_commit: int) -> tuple[float, str]:
            threads = max(1, connections // workers)
            # The raw processes load their imports for a second or two before their clock starts.
            window = CpuWindow(RAW_LEAD_SECONDS, max(1.0, args.seconds - RAW_LEAD_SECONDS - 1)).start()
            rate = raw_jobs_per_second(RawRun(owner, workers, threads, per_commit, args.seconds))
            return rate, describe(window.per_job(rate))

        def api(url: str, body: dict, connections: int, jobs_per_request: int) -> tuple[dict[str, float], str]:
            window = CpuWindow(1.0, max(1.0, args.seconds - 2.0)).start()
            figures = run_wrk(wrk, url, key, body, args.seconds, connections)
            return figures, describe(window.per_job(figures["rps"] * jobs_per_request))

        for connections in [] if args.batch_only else args.connections:
            limit, raw_cpu = raw(connections, 1)
            for label, base in (("POST /v1/jobs, a transaction each", url_alone), ("POST /v1/jobs, group commit", url)):
                before = group_sizes(base)
                one, cpu = api(f"{base}/v1/jobs", single, connections, 1)
                count, total = (after - was for after, was in zip(group_sizes(base), before, strict=True))
                mean = f"{total / count:.1f}" if count else "–"
                rows.append([label, connections, f"{one['rps']:.0f}", f"{one['rps']:.0f}", f"{limit:.0f}",
                             f"{one['rps'] / limit:.0%}", f"{one['p50']:.1f}", f"{one['p95']:.1f}", f"{one['p99']:.1f}",
                             one["errors"], mean, cpu, raw_cpu])  # fmt: skip
        single_proc.stop()
        for connections in (4, 8):
            many, cpu = api(f"{url}/v1/jobs/batch", batch, connections, args.batch_size)
            limit, raw_cpu = raw(connections, args.batch_size)
            jobs = many["rps"] * args.batch_size
            rows.append([f"POST /v1/jobs/batch ({args.batch_size} jobs)", connections, f"{many['rps']:.0f}",
                         f"{jobs:.0f}", f"{limit:.0f}", f"{jobs / limit:.0%}", f"{many['p50']:.1f}",
                         f"{many['p95']:.1f}", f"{many['p99']:.1f}", many["errors"], "–", cpu, raw_cpu])  # fmt: skip

    headers = ["request", "connections", "requests/s", "jobs/s", "raw jobs/s", "of raw"]
    cpu_headers = ["CPU µs/job py+pg+redis", "raw CPU µs/job"]
    text = table([*headers, "p50 ms", "p95 ms", "p99 ms", "errors", "requests per commit", *cpu_headers], rows)
    notes = (
        f"gunicorn with {workers} gevent workers, no inference worker running, {args.seconds} s per row, wrk -t 2 "
        "on the same machine. Every accepted job is a committed PostgreSQL row plus a Redis message. "
        f"Raw: the same INSERT (one row, or {args.batch_size} rows per commit) and publish through store.api and "
        f"broker.publish, no HTTP, from {workers} processes with connections/{workers} threads each "
        "(bench/raw_submit.py). Single submissions are measured against two APIs started side by side: one "
        "with ASSAY_GROUP_COMMIT_MAX=0 (a transaction per request, as before) and one with group commit "
        "(app/group_commit.py); requests per commit from the API's assay_submission_group_requests histogram. "
        "CPU µs per job (bench/cpu_split.py): user + system time from /proc over the middle of each load, of "
        "the Python processes (gunicorn, or the raw processes), PostgreSQL and Redis, divided by the jobs done "
        "meanwhile; wrk's own time is not counted. On these cores they are one budget."
    )
    record("API submission (CPU)", "python -m bench.api " + " ".join(argv or sys.argv[1:]), text, notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
