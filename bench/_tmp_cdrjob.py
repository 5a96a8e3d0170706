import time, json, datetime
from bench.harness import bench_stack
from bench.cdr import data_file, whole_job
from tests.support import Client
path, _ = data_file(1_000_000, False)
def ts(s): return datetime.datetime.fromisoformat(s.replace("Z","+00:00")).timestamp()
with bench_stack() as bench:
    w = bench.stack.tabular()
    client = Client(bench.stack.api()[1], bench.key())
    for i in range(4):
        t0 = time.time()
        el, job = whole_job(client, path)
        t1 = time.time()
        print(f"total {el:.3f} upload {ts(job['created_at'])-t0:.3f} queue {ts(job['started_at'])-ts(job['created_at']):.3f} run {ts(job['completed_at'])-ts(job['started_at']):.3f} wake {t1-ts(job['completed_at']):.3f}", job["result"]["timings"])
    for line in w.log_text().splitlines():
        if "batch processed" in line: print(line[-80:])
