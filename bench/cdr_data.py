"""Synthetic call detail records with known SIM boxes, for the `cdr_fraud` tests and benchmark.

    .venv/bin/python -m bench.cdr_data OUT.csv[.gz] --records 1000000 [--sim-boxes 20 --intensity 300]

What is in a file (all numbers Nigerian-style, `234` + 9 digits, generated from one seed):
- **normal subscribers**: a few calls a day (Poisson, 1-12 a day, busy in daytime) to a personal contact list of
  3-40 numbers, durations log-normal around a minute and a half;
- **SIM boxes** (`truth.sim_boxes`): `intensity` calls a day spread over the whole day, each to a fresh random
  destination, durations of 0.5-3.5 s (mean ~1.6 s): the short-duration, high-frequency signature;
- **call centres** (`truth.call_centres`): hundreds of distinct destinations a day, but calls of minutes;
- **auto-diallers** (`truth.auto_diallers`): many very short calls, but to a handful of numbers;
- **borderline callers** (`truth.borderline`): short calls to 40-49 distinct destinations, under the default 50.
The last three are the near-misses: with the catalog defaults none of them is flagged, every SIM box is.

Columns: `caller, callee, start_time, duration, cell_id, call_type` (extra columns the analysis ignores);
`start_time` as ISO 8601 (default) or epoch seconds; CSV with a header or JSON lines; gzip when the name
ends in `.gz`. Rows are in time order per day, as switches write them.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

DAY = 86_400
EPOCH0 = 1_790_000_000 - 1_790_000_000 % DAY  # a UTC midnight in 2026


@dataclass
class Truth:
    sim_boxes: list[str] = field(default_factory=list)
    call_centres: list[str] = field(default_factory=list)
    auto_diallers: list[str] = field(default_factory=list)
    borderline: list[str] = field(default_factory=list)
    records: int = 0
    days: int = 1


def _numbers(rng: np.random.Generator, count: int, prefix: int) -> np.ndarray:
    """`count` distinct numbers as strings, `234` + a 10-digit tail starting with `prefix`."""
    tails = rng.choice(10**8, size=count, replace=False) + prefix * 10**8
    return np.char.add("234", tails.astype("U10"))


def _day_times(rng: np.random.Generator, count: int, day: int, busy: bool) -> np.ndarray:
    """Call start times on one day: humans mostly 07:00-22:00, machines around the clock."""
    seconds = rng.normal(14.5 * 3600, 3.5 * 3600, count).clip(0, DAY - 1) if busy else rng.uniform(0, DAY - 1, count)
    return EPOCH0 + day * DAY + seconds.astype(np.int64)


def generate(
    records: int = 100_000,
    *,
    sim_boxes: int = 10,
    intensity: int = 300,
    call_centres: int = 5,
    auto_diallers: int = 5,
    borderline: int = 5,
    days: int = 2,
    seed: int = 7,
) -> tuple[dict[str, np.ndarray], Truth]:
    """Columns (numpy arrays, sorted by start time) and the truth about who is who."""
    rng = np.random.default_rng(seed)
    truth = Truth(days=days)
    pool = _numbers(rng, 400_000, 9)  # destinations for machines: a big national numbering range
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

    def add(caller: str, callees: np.ndarray, times: np.ndarray, durations: np.ndarray) -> None:
        parts.append((np.full(len(times), caller, dtype="U13"), callees, times, durations))

    special = _numbers(rng, sim_boxes + call_centres + auto_diallers + borderline, 8)
    groups = np.split(special, np.cumsum([sim_boxes, call_centres, auto_diallers]))
    truth.sim_boxes, truth.call_centres, truth.auto_diallers, truth.borderline = (g.tolist() for g in groups)
    for day in range(days):
        for caller in truth.sim_boxes:
            n = int(rng.integers(intensity * 9 // 10, intensity * 11 // 10 + 1))
            add(caller, rng.choice(pool, n, replace=False), _day_times(rng, n, day, False), rng.uniform(0.5, 3.5, n))
        for caller in truth.call_centres:
            n = int(rng.integers(250, 400))
            add(caller, rng.choice(pool, n, replace=False), _day_times(rng, n, day, True), rng.gamma(4, 45, n) + 20)
        for caller in truth.auto_diallers:
            n = int(rng.integers(150, 300))
            add(caller, rng.choice(pool[:12], n), _day_times(rng, n, day, False), rng.uniform(0.5, 2.5, n))
        for caller in truth.borderline:  # 40-49 distinct destinations, each called at least once
            k, n = int(rng.integers(40, 50)), int(rng.integers(60, 90))
            callees = rng.permutation(np.concatenate([pool[:k], rng.choice(pool[:k], n - k)]))
            add(caller, callees, _day_times(rng, n, day, False), rng.uniform(0.5, 2.5, n))
    planted = sum(len(p[2]) for p in parts)

    # Normal subscribers fill the rest: ~5 calls a day each, to their own contacts.
    normal_calls = max(0, records - planted)
    per_day = 5.0
    subscribers = max(1, int(normal_calls / (per_day * days)))
    callers = _numbers(rng, subscribers, 7)
    counts = rng.poisson(per_day * days, subscribers).clip(1, 12 * days)
    scale = normal_calls / max(1, counts.sum())
    counts = np.maximum(1, np.round(counts * scale)).astype(np.int64)
    total = int(counts.sum())
    who = np.repeat(np.arange(subscribers), counts)
    contacts = rng.integers(3, 41, subscribers)  # each subscriber's contact list size
    contact = (rng.random(total) ** 2 * contacts[who]).astype(np.int64)  # favourites called most
    # A contact's number: a hash of (subscriber, slot) into the subscriber range (people call people).
    callee_index = (who * 7919 + contact * 104_729) % subscribers
    callee = callers[callee_index]
    day_of = rng.integers(0, days, total)
    seconds = rng.normal(14.5 * 3600, 3.5 * 3600, total).clip(0, DAY - 1).astype(np.int64)
    times = EPOCH0 + day_of * DAY + seconds
    durations = rng.lognormal(np.log(90), 0.9, total).clip(1, 7200)
    parts.append((callers[who], callee, times, durations))

    caller_all = np.concatenate([p[0] for p in parts])
    callee_all = np.concatenate([p[1] for p in parts])
    time_all = np.concatenate([p[2] for p in parts])
    dur_all = np.round(np.concatenate([p[3] for p in parts]), 1)
    order = np.argsort(time_all, kind="stable")
    n = len(order)
    truth.records = n
    columns = {
        "caller": caller_all[order],
        "callee": callee_all[order],
        "start_time": time_all[order],
        "duration": dur_all[order],
        "cell_id": rng.integers(1000, 9999, n),
        "call_type": np.where(rng.random(n) < 0.9, "voice", "video"),
    }
    return columns, truth


def write(columns: dict[str, np.ndarray], path: Path, *, epoch: bool = False, jsonl: bool = False) -> None:
    """Write the columns as CSV with a header, or JSON lines; gzip if the name ends in .gz (DuckDB does the I/O)."""
    import duckdb

    con = duckdb.connect()
    con.register("frame", columns)
    start = "start_time" if epoch else "strftime(to_timestamp(start_time) AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%SZ')"
    query = f"SELECT caller, callee, {start} AS start_time, duration, cell_id, call_type FROM frame"
    compression = "gzip" if path.name.endswith(".gz") else "none"
    target = str(path).replace("'", "''")
    options = "FORMAT json" if jsonl else "FORMAT csv, HEADER"
    con.execute(f"COPY ({query}) TO '{target}' ({options}, COMPRESSION {compression})")
    con.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cdr_data", description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--sim-boxes", type=int, default=10)
    parser.add_argument("--intensity", type=int, default=300, help="SIM-box calls per day")
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--epoch", action="store_true", help="start_time as epoch seconds")
    parser.add_argument("--jsonl", action="store_true", help="JSON lines instead of CSV")
    args = parser.parse_args(argv)
    columns, truth = generate(
        args.records, sim_boxes=args.sim_boxes, intensity=args.intensity, days=args.days, seed=args.seed
    )
    write(columns, args.out, epoch=args.epoch, jsonl=args.jsonl)
    json.dump(asdict(truth), sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
