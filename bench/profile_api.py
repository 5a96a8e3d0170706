"""Where an API worker spends its time under single-submission load (py-spy, wrk).

    .venv/bin/python -m bench.profile_api [--seconds 10]

Samples one gunicorn worker with py-spy while wrk posts single jobs (or `--batch N` batches), then prints the functions
with the largest share of samples (inclusive), grouped by module. Needs `pip install py-spy`.
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from bench.api import TEXT, ensure_wrk, run_wrk
from bench.harness import bench_stack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_api", description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--batch", type=int, default=0, help="post batches of this many jobs instead of single jobs")
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args(argv)
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    wrk = ensure_wrk()
    single = {"analysis": "sentiment", "input": {"text": TEXT}}
    body, path = ({"jobs": [single] * args.batch}, "/v1/jobs/batch") if args.batch else (single, "/v1/jobs")
    out = Path(tempfile.mkdtemp()) / "stacks.txt"
    with bench_stack() as bench:
        api, url = bench.stack.api()
        key = bench.key()
        children = subprocess.run(
            ["pgrep", "-P", str(api.pid)], check=False, capture_output=True, text=True
        ).stdout.split()
        load = threading.Thread(target=run_wrk, args=(wrk, url + path, key, body, args.seconds + 2, args.connections))
        load.start()
        subprocess.run(
            [pyspy, "record", "-p", children[0], "-d", str(args.seconds), "-r", "200", "-f", "raw", "-o", str(out),
             "--nonblocking"],
            check=True, capture_output=True,
        )  # fmt: skip
        load.join()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        for frame in set(stack.split(";")):
            name, _, where = frame.partition(" (")
            module = where.split(":")[0].split("site-packages/")[-1].split("/work/main/")[-1]
            inclusive[f"{name} ({module})"] += n
    rows = [{"share": round(100 * n / total, 1), "frame": f} for f, n in inclusive.most_common(args.top)]
    for row in rows:
        print(f"{row['share']:5.1f}%  {row['frame']}")
    print(json.dumps({"samples": total}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
