"""Flat cost at scale: the API and the hot statements on an empty jobs table and on one of 10M rows.

    .venv/bin/python -m bench.scale [--rows 10000000] [--tenants 100] [--seconds 5]

Users keep 30 days of jobs (the retention default): at 100 jobs/s that is 260 million rows, so
nothing a request or a sweep does may grow with the table. The run measures, on an empty table,
then again after filling it with `--rows` finished jobs across `--tenants` tenants (generated in SQL,
created over the last 31 days so retention has a tail to find):
- through the API (wrk, 16 connections): submit, GET by id, GET ?wait= of a finished job, and the
  second page of a list (cursor);
- EXPLAIN ANALYZE of the statements the code really runs (captured from store/ functions in a
  rolled-back transaction): get, list page, admission's queued count, claim, the sweeper, retention.
A figure passes when the 10M figure is within 20 % of the empty one and no plan scans `jobs`
sequentially.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, Engine, event, select, text

from bench.api import TEXT, ensure_wrk, run_wrk
from bench.harness import Bench, bench_stack, record, table
from store.api import JobSpec, create_jobs, get_job, list_jobs, queued_jobs
from store.keys import create_key
from store.maintenance import Drained, expire_jobs, sweep
from store.result_cache import lookup_statement
from store.tables import jobs
from store.worker import claim_jobs

FILL_CHUNK = 500_000
SINGLE = {"analysis": "sentiment", "input": {"text": TEXT}}
ANALYSES = ["sentiment", "toxicity", "phishing", "prompt_injection"]
# Ids as store.ids.new_ordered_id makes them: 10 base32hex characters of the creation millisecond, then 14 of
# (here md5) noise; so the table's primary key is ordered by time, as it is in a deployment.
_BASE32HEX = "'0123456789abcdefghijklmnopqrstuv'"
_MILLIS_BASE32HEX = " || ".join(f"substr({_BASE32HEX}, ((ms >> {5 * (9 - k)}) & 31)::int + 1, 1)" for k in range(10))
FILL = text(
    """
    INSERT INTO jobs (id, owner, analysis, status, input, result, metadata, attempts,
                      created_at, enqueued_at, started_at, completed_at)
    SELECT 'job_' || MILLIS_BASE32HEX || substr(md5(:seed || '-' || i), 1, 14),
           (:owners)[1 + i % cardinality(:owners)],
           (:analyses)[1 + i % cardinality(:analyses)], 'succeeded',
           jsonb_build_object('text', 'ticket ' || i || ': my order arrived late and the box was damaged'),
           jsonb_build_object('label', 'negative', 'score', 0.91, 'scores',
                              jsonb_build_object('negative', 0.91, 'neutral', 0.06, 'positive', 0.03)),
           '{}'::jsonb, 1, t, t, t + interval '40 ms', t + interval '90 ms'
    FROM (SELECT i, t, (extract(epoch FROM t) * 1000)::bigint AS ms
          FROM (SELECT i, now() - interval '31 days' * random() AS t FROM generate_series(:start, :stop) AS i) AS r
    ) AS g
    """.replace("MILLIS_BASE32HEX", _MILLIS_BASE32HEX)
)


def fill(db: Engine, owners: list[str], rows: int) -> float:
    """Insert `rows` finished jobs in chunks; seconds taken."""
    began = time.monotonic()
    for start in range(0, rows, FILL_CHUNK):
        stop = min(rows, start + FILL_CHUNK) - 1
        with db.begin() as conn:
            conn.execute(text("SET LOCAL synchronous_commit = off"))
            conn.execute(text("SET LOCAL statement_timeout = 0"))
            conn.execute(FILL, {"seed": "scale", "owners": owners, "analyses": ANALYSES, "start": start, "stop": stop})
        print(f"[scale] {stop + 1:,} rows in {time.monotonic() - began:.0f} s", file=sys.stderr)
    with db.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("SET statement_timeout = 0"))  # the settings' timeout is for requests, not this
        conn.execute(text("VACUUM ANALYZE jobs"))
        # The fill leaves gigabytes of dirty buffers: without a checkpoint now, the checkpointer writes
        # them out during the measurement and the 10M figures measure the disk, not the table.
        conn.execute(text("CHECKPOINT"))
    return time.monotonic() - began


def finished_job(db: Engine, owner: str) -> str:
    """A finished job of `owner` (one is made on the empty table)."""
    with db.begin() as conn:
        found = conn.execute(
            select(jobs.c.id).where(jobs.c.owner == owner, jobs.c.status == "succeeded").limit(1)
        ).scalar()
        if found:
            return found
        (row,) = create_jobs(conn, owner, [JobSpec("sentiment", {"text": "done"})]).rows
        conn.execute(
            jobs.update()
            .where(jobs.c.id == row["id"])
            .values(status="succeeded", result={"label": "positive"}, completed_at=row["created_at"])
        )
        return row["id"]


@dataclass
class Side:
    """One database with its own API: the empty one or the filled one."""

    bench: Bench
    owner: str
    key: str
    url: str
    job_id: str
    tenants: list[str]  # every tenant's id: the fill spreads its rows across them

    @classmethod
    def start(cls, bench: Bench, tenants: int) -> Side:
        with bench.db.begin() as conn:
            keys = [create_key(conn, f"scale-{n:03d}") for n in range(tenants)]
        _, url = bench.stack.api()
        owner = keys[0].tenant_id
        return cls(bench, owner, keys[0].secret, url, finished_job(bench.db, owner), [k.tenant_id for k in keys])


def alternated_figures(wrk: str, sides: list[Side], seconds: int, repeats: int) -> list[dict[str, dict[str, float]]]:
    """Each side's figures `repeats` times, the sides taking turns (and turns about who goes first), so
    that a drift of the shared machine falls on both; per figure, the run with the median rate is kept."""
    runs: list[list[dict[str, dict[str, float]]]] = [[] for _ in sides]
    for repeat in range(repeats):
        order = range(len(sides)) if repeat % 2 == 0 else reversed(range(len(sides)))
        for index in order:
            side = sides[index]
            runs[index].append(_api_figures_once(side.bench.db, wrk, side.url, side.key, side.job_id, seconds))
    medians = []
    for side_runs in runs:
        out = {}
        for name in side_runs[0]:
            ordered = sorted((run[name] for run in side_runs), key=lambda figure: figure["rps"])
            out[name] = ordered[len(ordered) // 2]
        medians.append(out)
    return medians


def _api_figures_once(
    db: Engine, wrk: str, url: str, key: str, job_id: str, seconds: int
) -> dict[str, dict[str, float]]:
    import requests

    submit = run_wrk(wrk, f"{url}/v1/jobs", key, SINGLE, seconds, 16)
    # Fresh statistics before the reads, on either table: the submits just added thousands of rows, and
    # on the "empty" table the planner would otherwise guess (a slow empty figure flatters the 10M ratio).
    with db.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE jobs"))
    headers = {"Authorization": f"Bearer {key}"}
    first = requests.get(f"{url}/v1/jobs", params={"limit": 50}, headers=headers, timeout=30).json()
    cursor = first.get("next_cursor")
    page2 = f"{url}/v1/jobs?limit=50" + (f"&cursor={cursor}" if cursor else "")
    return {
        "submit (POST /v1/jobs)": submit,
        "GET /v1/jobs/{id}": run_wrk(wrk, f"{url}/v1/jobs/{job_id}", key, None, seconds, 16),
        "GET /v1/jobs/{id}?wait=1 (finished)": run_wrk(wrk, f"{url}/v1/jobs/{job_id}?wait=1", key, None, seconds, 16),
        "GET /v1/jobs?limit=50, page 2": run_wrk(wrk, page2, key, None, seconds, 16),
    }


def captured_statements(db: Engine, call: Callable[[Connection], Any]) -> list[tuple[str, Any]]:
    """The SQL `call` runs, with its parameters, in a transaction that is rolled back."""
    seen: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if not executemany and statement.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE", "WITH")):
            seen.append((statement, parameters))

    with db.connect() as conn:
        event.listen(conn, "before_cursor_execute", capture)
        try:
            with conn.begin() as transaction:
                call(conn)
                transaction.rollback()
        finally:
            event.remove(conn, "before_cursor_execute", capture)
    return seen


def explain(db: Engine, statement: str, parameters: Any) -> tuple[float, int, list[str]]:
    """Execution ms, rows out of the top node, and the plan's nodes on `jobs` (EXPLAIN ANALYZE, rolled back)."""
    raw = db.raw_connection()
    try:
        with raw.cursor() as cur:
            cur.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters)
            (plan,) = cur.fetchone()
        raw.rollback()
    finally:
        raw.close()
    plan = plan[0] if isinstance(plan, list) else json.loads(plan)[0]
    nodes: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        index = str(node.get("Index Name", ""))
        if node.get("Relation Name") == "jobs" or index.split("_")[1:2] == ["jobs"]:
            nodes.append(f"{node['Node Type']}" + (f" {node['Index Name']}" if node.get("Index Name") else ""))
        for child in node.get("Plans", []):
            walk(child)

    walk(plan["Plan"])
    return plan["Execution Time"], plan["Plan"].get("Actual Rows", 0), nodes


def statement_plans(db: Engine, owner: str, job_id: str) -> list[list[str]]:
    with db.connect() as conn:
        page = list_jobs(conn, owner, limit=50)
        queued = list(
            conn.execute(select(jobs.c.id).where(jobs.c.status == "queued", jobs.c.owner == owner).limit(32)).scalars()
        )
        lookup_query = lookup_statement(conn)
    before = (page[-1]["created_at"], page[-1]["id"]) if page else None
    calls: dict[str, Callable[[Connection], Any]] = {
        "get by id": lambda c: get_job(c, owner, job_id),
        # the function's query itself: EXPLAIN of the call shows only a Function Scan
        "intake: cache lookup, 100 keys": lambda c: c.exec_driver_sql(
            lookup_query, {"keys": ",".join(sorted(secrets.token_hex(32) for _ in range(100))), "ttl": 3600.0}
        ),
        "list, page 2 (keyset)": lambda c: list_jobs(c, owner, limit=50, before=before),
        "admission: queued count": lambda c: queued_jobs(c, ANALYSES),
        "claim 32 queued jobs": lambda c: claim_jobs(c, queued, 300),
        "sweeper": lambda c: sweep(
            c,
            epoch="bench",
            drained=[Drained(ANALYSES, set())],
            requeue_after_seconds=120,
            max_attempts=3,
            limit=1000,
        ),
        "retention (30 days)": lambda c: expire_jobs(c, timedelta(days=30).total_seconds(), 1000),
    }
    rows = []
    for name, call in calls.items():
        for index, (statement, parameters) in enumerate(captured_statements(db, call)):
            ms, found, nodes = explain(db, statement, parameters)
            seq = any(node.startswith("Seq Scan") for node in nodes)
            label = name if index == 0 else f"{name} ({index + 1})"
            plan = ", ".join(dict.fromkeys(nodes)) or "-"
            rows.append([label, f"{ms:.2f}", str(found), plan, "SEQ SCAN" if seq else "ok"])
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--tenants", type=int, default=100)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure; the median is reported")
    args = parser.parse_args(argv)
    wrk = ensure_wrk()

    limits = {"ASSAY_MAX_QUEUE_DEPTH": "100000000", "ASSAY_MAX_QUEUE_WAIT_SECONDS": "1000000"}
    # Two databases, each with its own API: the figures of both are measured in alternating windows
    # after the fill, so the machine's drift over a long run (a 10M fill is ~15 minutes) is not read as
    # the table's cost.
    with bench_stack(**limits) as empty_bench, bench_stack(**limits) as full_bench:
        empty_side, full_side = Side.start(empty_bench, args.tenants), Side.start(full_bench, args.tenants)
        for side in (empty_side, full_side):
            run_wrk(wrk, f"{side.url}/v1/jobs/{side.job_id}", side.key, None, 2, 16)  # warm-up
        filled_in = fill(full_bench.db, full_side.tenants, args.rows)
        empty, full = alternated_figures(wrk, [empty_side, full_side], args.seconds, args.repeats)
        # After the figures: the submits left queued jobs for the claim to take (with none, its plan is moot).
        empty_plans = statement_plans(empty_bench.db, empty_side.owner, empty_side.job_id)
        full_plans = statement_plans(full_bench.db, full_side.owner, full_side.job_id)

    rows, ok = [], True
    for name, before in empty.items():
        after = full[name]
        ratio = after["rps"] / before["rps"]
        good = ratio >= 0.8 and not after["errors"]
        ok &= good
        rows.append([name, f"{before['rps']:.0f}", f"{after['rps']:.0f}", f"{ratio:.0%}", f"{before['p95']:.1f}",
                     f"{after['p95']:.1f}", "ok" if good else "SLOWER"])  # fmt: skip
    rows_label = f"{args.rows:,} rows"
    text_ = table(["API (16 connections)", "empty req/s", f"{rows_label} req/s", "ratio", "empty p95 ms",
                   f"{rows_label} p95 ms", "within 20 %"], rows)  # fmt: skip
    empty_ms = {row[0]: row[1] for row in empty_plans}
    plans = [[row[0], empty_ms.get(row[0], "-"), *row[1:]] for row in full_plans]
    ok &= all(row[-1] == "ok" for row in plans)
    text_ += "\n\n" + table(["statement", "empty ms", f"{rows_label} ms", "rows", "plan on jobs", "scan"], plans)
    notes = (
        f"{args.rows:,} finished jobs across {args.tenants} tenants generated in SQL in {filled_in:.0f} s (created "
        "over the last 31 days); the measured tenant holds 1 %. wrk -t 2, 16 connections, "
        f"{args.seconds} s per figure, median of {args.repeats} runs; the empty and the filled table are two databases "
        "with an API each, measured in alternating windows after the fill (which side goes first alternates too); a "
        "CHECKPOINT after the fill, an ANALYZE after each round's submits, gunicorn with 2 gevent workers each, "
        "no inference worker."
    )
    record("Scale (jobs table)", "python -m bench.scale " + " ".join(argv or sys.argv[1:]), text_, notes)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
