"""A private Assay stack for a benchmark: fresh database, own queues, real gunicorn and workers.

Reuses the process helpers of the test suite, so benchmarks measure exactly what the tests run.
"""

from __future__ import annotations

import contextlib
import os
import platform
import secrets
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg2
import redis
from cryptography.fernet import Fernet
from psycopg2 import sql
from sqlalchemy import Engine

from config.settings import ROOT, Settings, load_settings
from deploy.local.services import running
from store.db import make_engine
from store.keys import create_key
from store.migrate import upgrade
from tests.support import Stack

BENCH_REDIS_DB = 12
RESULTS = ROOT / "docs" / "BENCHMARKS.md"


@dataclass
class Bench:
    settings: Settings
    db: Engine
    stack: Stack
    env: dict[str, str]

    def key(self) -> str:
        with self.db.begin() as conn:
            return create_key(conn, f"bench-{secrets.token_hex(4)}").secret


def _admin(url: str) -> psycopg2.extensions.connection:
    conn = psycopg2.connect(url.rsplit("/", 1)[0] + "/postgres")
    conn.autocommit = True
    return conn


@contextlib.contextmanager
def bench_stack(**overrides: str) -> Iterator[Bench]:
    """Services found or started as `make test` does; everything else private to this run."""
    with running() as services:
        name = f"assay_bench_{secrets.token_hex(4)}"
        with contextlib.closing(_admin(services.database_url)) as conn, conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        redis_url = services.redis_url.rsplit("/", 1)[0] + f"/{BENCH_REDIS_DB}"
        redis.Redis.from_url(redis_url).flushdb()
        logdir = Path(tempfile.mkdtemp(prefix="assay-bench-"))
        env = {
            **os.environ,
            "DATABASE_URL": services.database_url.rsplit("/", 1)[0] + f"/{name}",
            "REDIS_URL": redis_url,
            "ASSAY_QUEUE_PREFIX": f"b{secrets.token_hex(3)}",
            "ASSAY_VAR_DIR": str(logdir / "var"),
            "ASSAY_WORKER_METRICS_PORT": "0",
            "ASSAY_AUTH_CACHE_SECONDS": "60",
            "ASSAY_SECRETS_KEYS": Fernet.generate_key().decode(),
            "HF_HUB_OFFLINE": "1",
            # Benchmarks measure the pipeline with deliberate backlogs, not the per-key limiter (one key sends
            # everything) nor admission by expected wait (bench/chaos.py and test_admission.py measure that).
            "ASSAY_RATE_LIMITS_ENABLED": "false",
            "ASSAY_MAX_QUEUE_WAIT_SECONDS": "1000000",
            **overrides,
        }
        os.environ.update({k: v for k, v in env.items() if k.startswith(("ASSAY_", "DATABASE_URL", "REDIS_URL"))})
        settings = load_settings()
        upgrade(settings)
        engine = make_engine(settings, pool_size=2)
        stack = Stack(env=env, logdir=logdir, queue_prefix=env["ASSAY_QUEUE_PREFIX"])
        try:
            yield Bench(settings, engine, stack, env)
        finally:
            stack.stop_all()
            engine.dispose()
            with contextlib.closing(_admin(services.database_url)) as conn, conn.cursor() as cur:
                cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    cores = len(os.sched_getaffinity(0))
    return f"{platform.node()}: {cores} cores ({cpu}), {mem:.0f} GiB, Python {platform.python_version()}"


def commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT, check=False)
    return out.stdout.strip() or "unknown"


def table(headers: list[str], rows: list[list[object]]) -> str:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells]
    return "\n".join([line, rule, *body])


def record(title: str, command: str, text: str, notes: str = "") -> None:
    """Print the table and add it to docs/BENCHMARKS.md (newest section first under its title)."""
    print(text)
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    section = f"\n### {title} — {when}\n\n`{command}` · commit {commit()} · {machine()}\n\n{text}\n" + (
        f"\n{notes}\n" if notes else ""
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    existing = RESULTS.read_text() if RESULTS.exists() else "# Benchmarks\n"
    RESULTS.write_text(existing.rstrip("\n") + "\n" + section)
