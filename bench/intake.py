"""The batch endpoint's cost against the raw INSERT + publish, in one process, taking turns every few requests.

    .venv/bin/python -m bench.intake [--pairs 60] [--batch-size 100]

bench.api measures the API and the raw path ten seconds each, minutes apart; on these shared machines the
speed drifts by a third between such windows, more than most changes to the intake path are worth. Here
one process alternates: `--per-turn` raw transactions (store.api.create_jobs + the lifecycle's publish,
as bench/raw_submit.py) and as many batch requests through Flask's test client (validation, result cache,
INSERT, publish, events, documents out; no socket, no gunicorn), each turn timed on the wall clock (the
work is synchronous, so PostgreSQL's and Redis's time is inside it). The median of the per-pair ratios
is the figure; with HTTP and gunicorn left out it is an upper bound for bench.api's ratio.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import time
from collections.abc import Callable

from bench.harness import bench_stack, record, table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.intake", description=__doc__)
    parser.add_argument("--pairs", type=int, default=60)
    parser.add_argument("--per-turn", type=int, default=8, help="requests (and raw transactions) per turn")
    parser.add_argument("--batch-size", type=int, default=100)
    args = parser.parse_args(argv)
    size = args.batch_size
    with bench_stack() as bench:
        from app.factory import create_app
        from store.api import JobSpec, create_jobs

        app = create_app(bench.settings)
        lifecycle = app.extensions["assay"].lifecycle
        client = app.test_client()
        headers = {"Authorization": f"Bearer {bench.key()}"}
        with bench.db.begin() as conn:
            tenant = conn.exec_driver_sql("SELECT id FROM tenants LIMIT 1").scalar_one()
        nonce, sent = secrets.token_hex(4), [0]

        def body() -> bytes:
            sent[0] += 1
            jobs = [
                {"analysis": "sentiment", "input": {"text": f"The delivery was late. (order {nonce}.{sent[0]}.{i})"}}
                for i in range(size)
            ]
            return json.dumps({"jobs": jobs}).encode()

        def api(payload: bytes) -> None:
            response = client.post("/v1/jobs/batch", data=payload, headers=headers, content_type="application/json")
            assert response.status_code == 202, response.get_data(as_text=True)[:300]

        specs = [JobSpec("sentiment", {"text": "The delivery was late."}) for _ in range(size)]

        def raw(_: bytes) -> None:
            with lifecycle.transaction() as unit:
                created = create_jobs(unit.conn, tenant, specs, unit.publish_epoch)
                unit.publish_jobs([(row["id"], row["analysis"]) for row in created.rows])

        def turn(run: Callable[[bytes], None]) -> float:
            payloads = [body() for _ in range(args.per_turn)]
            started = time.perf_counter()
            for payload in payloads:
                run(payload)
            return (time.perf_counter() - started) * 1e6 / args.per_turn / size

        for _ in range(5):  # warm-up: connections, compiled statements, the auth cache
            turn(raw), turn(api)
        raws, apis = [], []
        for _ in range(args.pairs):
            raws.append(turn(raw))
            apis.append(turn(api))
    ratios = sorted(r / a for r, a in zip(raws, apis, strict=True))
    quartiles = statistics.quantiles(ratios, n=4)
    text = table(
        ["path", "µs per job (median)", "of raw (median of pairs)", "quartiles"],
        [
            ["raw: INSERT + publish", f"{statistics.median(raws):.1f}", "100%", "-"],
            [
                f"POST /v1/jobs/batch ({size} jobs), test client",
                f"{statistics.median(apis):.1f}",
                f"{statistics.median(ratios):.1%}",
                f"{quartiles[0]:.1%}-{quartiles[2]:.1%}",
            ],
        ],
    )
    record(
        "Batch intake in one process (bench.intake)",
        "python -m bench.intake " + " ".join(argv or []),
        text,
        f"{args.pairs} pairs of {args.per_turn} raw transactions then {args.per_turn} requests, {size} jobs each, "
        "wall time per job (PostgreSQL and Redis included: the work is synchronous). No HTTP or gunicorn: "
        "an upper bound for bench.api's batch ratio.",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
