"""Integration session set-up: a fresh, migrated PostgreSQL database and an isolated Redis namespace.

`make test` exports DATABASE_URL and REDIS_URL (servers it found or started); this file
creates database `assay_test_<random>` on that server, migrates it with Alembic, points a
dedicated Redis database and queue prefix at the session, and hands that environment to the
real gunicorn and Celery processes the tests start. The test process's own `os.environ` is
left as it was, so unit tests never see it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import closing, contextmanager

import psycopg2
import pytest
import redis
from cryptography.fernet import Fernet
from psycopg2 import sql
from sqlalchemy import Engine

from config.settings import Settings, load_settings
from store.db import make_engine
from store.keys import create_key
from store.migrate import upgrade
from tests.support import Client, Stack

TEST_REDIS_DB = 11

TEST_ENV = {
    "ASSAY_ENVIRONMENT": "test",
    "ASSAY_MAX_BATCH_SIZE": "32",
    "ASSAY_MAX_BATCH_WAIT_MS": "25",
    "ASSAY_LEASE_SECONDS": "6",
    "ASSAY_REQUEUE_AFTER_SECONDS": "4",
    "ASSAY_SWEEP_INTERVAL_SECONDS": "1",
    "ASSAY_MAX_ATTEMPTS": "3",
    "ASSAY_AUTH_CACHE_SECONDS": "0",
    "ASSAY_TORCH_THREADS": "1",
    "ASSAY_LOG_LEVEL": "INFO",
    "ASSAY_WORKER_METRICS_PORT": "0",
    # Many processes live at once in a session; PostgreSQL's default 100 connections must hold them all.
    "ASSAY_DB_POOL_SIZE": "4",
    # Tests flood queues on purpose; the wait bound has its own test (test_admission.py).
    "ASSAY_MAX_QUEUE_WAIT_SECONDS": "3600",
    # Per-key rate limits well above what any test sends; the tests of the limits set their own (issue 14).
    "ASSAY_RATE_REQUESTS": "5000",
    "ASSAY_RATE_JOBS_PER_MINUTE": "200000",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


@contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    """os.environ with `env` added, only while settings are read."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _admin(url: str) -> psycopg2.extensions.connection:
    conn = psycopg2.connect(url.rsplit("/", 1)[0] + "/postgres")
    conn.autocommit = True
    return conn


@pytest.fixture(scope="session")
def session_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The environment of every process the session starts: its own database, Redis db and queues."""
    base = load_settings()
    name = f"assay_test_{secrets.token_hex(4)}"
    server = base.database_url_plain.rsplit("/", 1)[0]
    with closing(_admin(base.database_url_plain)) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    # No FLUSHDB: other test sessions may share this server; the random queue prefix keeps us apart.
    redis_url = base.redis_url.rsplit("/", 1)[0] + f"/{TEST_REDIS_DB}"
    env = {
        **TEST_ENV,
        "DATABASE_URL": f"{server}/{name}",
        "REDIS_URL": redis_url,
        "ASSAY_QUEUE_PREFIX": f"t{secrets.token_hex(3)}",
        "ASSAY_SECRETS_KEYS": Fernet.generate_key().decode(),
        "ASSAY_VAR_DIR": str(tmp_path_factory.mktemp("var")),
    }
    with environment(env):
        upgrade(load_settings())
    yield env
    with closing(_admin(base.database_url_plain)) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def settings(session_env: dict[str, str]) -> Settings:
    """The session's settings, as its processes read them."""
    with environment(session_env):
        return load_settings()


@pytest.fixture(scope="session")
def fresh_database(settings: Settings):
    """Make another migrated database on the same server: (url, engine). For stacks that run a sweeper,
    which re-publishes every stale job in its database to its own queues: sharing one database, two
    stacks' sweepers and workers would take each other's jobs."""
    made: list[tuple[str, Engine]] = []
    server = settings.database_url_plain.rsplit("/", 1)[0]

    def make() -> tuple[str, Engine]:
        name = f"assay_test_{secrets.token_hex(4)}"
        with closing(_admin(settings.database_url_plain)) as conn, conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        own = load_settings(database_url=f"{server}/{name}")
        upgrade(own)
        engine = make_engine(own, pool_size=2)
        made.append((name, engine))
        return f"{server}/{name}", engine

    yield make
    for name, engine in made:
        engine.dispose()
        with closing(_admin(settings.database_url_plain)) as conn, conn.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def db(settings: Settings) -> Iterator[Engine]:
    engine = make_engine(settings, pool_size=2)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def redis_client(settings: Settings) -> redis.Redis:
    return redis.Redis.from_url(settings.redis_url)


@pytest.fixture
def private_redis(tmp_path) -> Iterator[str]:
    """A Redis server of this test's own (no persistence), for tests that destroy the broker's state."""
    from deploy.local.services import LocalRedis
    from tests.support import free_port

    server = LocalRedis(tmp_path / "redis", free_port(), persist=False)
    url = server.start()
    yield url
    server.stop()


@pytest.fixture(scope="session")
def stack(settings: Settings, session_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {**os.environ, **session_env}
    stack = Stack(env=env, logdir=tmp_path_factory.mktemp("logs"), queue_prefix=settings.queue_prefix)
    yield stack
    stack.stop_all()


@pytest.fixture(scope="session")
def api_url(stack: Stack) -> str:
    proc, url = stack.api()
    stack.keep(proc)
    return url


@pytest.fixture(scope="module", autouse=True)
def module_processes(stack: Stack) -> Iterator[None]:
    """Stop what a test module started when the module ends: a worker left on the session's queues would
    take the next module's jobs, and every live process holds PostgreSQL connections."""
    mark = len(stack.procs)
    yield
    stack.stop_since(mark)


@pytest.fixture
def new_key(db: Engine):
    """Issue a key for a brand-new tenant: each test sees only its own jobs."""

    def issue(tenant: str | None = None) -> str:
        with db.begin() as conn:
            return create_key(conn, tenant or f"tenant-{secrets.token_hex(4)}").secret

    return issue


@pytest.fixture
def client(api_url: str, new_key) -> Client:
    return Client(api_url, new_key())
