"""`python -m deploy.backup dump|restore|verify`: PostgreSQL backups with a manifest that proves a restore.

PostgreSQL is the source of truth; it is the only thing backed up. Redis carries messages only: every
job and webhook event lives in PostgreSQL, and the sweepers re-publish whatever the broker lost
(ARCHITECTURE.md, invariants 1 and 8), so an empty Redis after a restore is expected, not a loss.

A backup is a folder `assay-<UTC time>/` holding `assay.dump` (pg_dump's custom format: compressed,
restorable table by table, readable by pg_restore of the same or a newer major) and `manifest.json`:
the dump's sha256 and size, the server version, the Alembic revision, and row counts of the tables that
matter, counted in the very snapshot pg_dump dumps (an exported snapshot), so a restore can prove it got
everything back. The Kubernetes CronJob (deploy/k8s/base/backup-cronjob.yaml) writes the same shape.

Credentials reach pg_dump and pg_restore through libpq's PG* variables, never their command line. The
binaries are found the way deploy/local/services.py finds the server's (pg_config, Debian's
/usr/lib/postgresql/N/bin, PATH), newest major first, and installed on a bare Debian CI machine.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2
from psycopg2 import sql
from sqlalchemy.engine import make_url

from config import Settings, get_settings
from config.settings import run_command

FORMAT = "assay-backup/1"
DUMP_NAME = "assay.dump"
MANIFEST_NAME = "manifest.json"
#: Counted at backup time and checked after a restore.
COUNTED_TABLES = ("jobs", "webhook_events", "tenants")
MANIFEST_KEYS = ("format", "created_at", "dump", "sha256", "bytes", "server_version", "alembic_revision", "counts")


class BackupError(RuntimeError):
    """A backup or restore that cannot be trusted: the message says what to do."""


@dataclass(frozen=True)
class Target:
    """One database, as libpq environment variables (no password in any argv) and its name."""

    env: dict[str, str]
    database: str

    @classmethod
    def from_settings(cls, settings: Settings) -> Target:
        url = make_url(settings.database_url_plain)
        env = {"PGHOST": url.host or "", "PGPORT": str(url.port or 5432), "PGUSER": url.username or "",
               "PGPASSWORD": url.password or "", "PGDATABASE": url.database or ""}  # fmt: skip
        if "sslmode" in url.query:
            env["PGSSLMODE"] = str(url.query["sslmode"])
        return cls({k: v for k, v in env.items() if v}, url.database or "")

    def connect(self, database: str | None = None) -> Any:
        env = self.env
        return psycopg2.connect(
            host=env.get("PGHOST"), port=env.get("PGPORT"), user=env.get("PGUSER"),
            password=env.get("PGPASSWORD"), dbname=database or self.database, sslmode=env.get("PGSSLMODE"),
        )  # fmt: skip

    def run(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(argv, env={**os.environ, **self.env}, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise BackupError(f"{Path(argv[0]).name} failed: {done.stderr.strip() or done.stdout.strip()}")
        return done


def _major(binary: Path) -> int:
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=False).stdout
    found = re.search(r"(\d+)(?:\.\d+)?", out)
    return int(found.group(1)) if found else 0


def client_binary(name: str, server_major: int) -> Path:
    """pg_dump/pg_restore of at least the server's major version (an older one refuses a newer server)."""
    from deploy.local.services import install_postgres

    def candidates() -> list[Path]:
        dirs = []
        if shutil.which("pg_config"):
            out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=False)
            dirs.append(out.stdout.strip())
        dirs += glob.glob("/usr/lib/postgresql/*/bin")
        found = [Path(d) / name for d in dirs if d and (Path(d) / name).exists()]
        on_path = shutil.which(name)
        return [*found, *([Path(on_path)] if on_path else [])]

    usable = sorted(((_major(p), p) for p in candidates()), reverse=True)
    if not usable or usable[0][0] < server_major:
        install_postgres()
        usable = sorted(((_major(p), p) for p in candidates()), reverse=True)
    if not usable or usable[0][0] < server_major:
        raise BackupError(f"no {name} of PostgreSQL {server_major} or newer: install the postgresql-client package")
    return usable[0][1]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _counts(cur: Any) -> dict[str, int]:
    counts = {}
    for table in COUNTED_TABLES:
        cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
        counts[table] = cur.fetchone()[0]
    return counts


def dump(settings: Settings, root: Path) -> Path:
    """Write `root/assay-<UTC time>/` (dump + manifest); returns the folder."""
    target = Target.from_settings(settings)
    folder = root / time.strftime("assay-%Y%m%dT%H%M%SZ", time.gmtime())
    with closing(target.connect()) as conn, conn.cursor() as cur:
        # One snapshot for pg_dump and the counts: the manifest describes exactly what the dump holds.
        conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
        cur.execute("SELECT pg_export_snapshot(), current_setting('server_version_num')::int / 10000,"
                    " current_setting('server_version')")  # fmt: skip
        snapshot, major, version = cur.fetchone()
        cur.execute("SELECT to_regclass('public.alembic_version') IS NOT NULL")
        if not cur.fetchone()[0]:
            raise BackupError(f"database {target.database!r} holds no Assay schema (no alembic_version table)")
        cur.execute("SELECT version_num FROM alembic_version")
        revision = cur.fetchone()[0]
        counts = _counts(cur)
        pg_dump = client_binary("pg_dump", major)
        folder.mkdir(parents=True, exist_ok=False)
        target.run([str(pg_dump), "--format=custom", "--no-owner", f"--snapshot={snapshot}",
                    f"--file={folder / DUMP_NAME}"])  # fmt: skip
        conn.rollback()
    manifest = {
        "format": FORMAT,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "dump": DUMP_NAME,
        "sha256": _sha256(folder / DUMP_NAME),
        "bytes": (folder / DUMP_NAME).stat().st_size,
        "server_version": version,
        "alembic_revision": revision,
        "counts": counts,
        "counts_exact": True,
        "pg_dump": f"{pg_dump} (PostgreSQL {_major(pg_dump)})",
    }
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
    return folder


def verify(folder: Path) -> dict[str, Any]:
    """The manifest, once the dump beside it is proven whole (size and sha256)."""
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    missing = [key for key in MANIFEST_KEYS if key not in manifest]
    if manifest.get("format") != FORMAT or missing:
        raise BackupError(f"{folder}: not an {FORMAT} manifest (missing {', '.join(missing) or 'format'})")
    dumped = folder / manifest["dump"]
    if not dumped.exists() or dumped.stat().st_size != manifest["bytes"] or _sha256(dumped) != manifest["sha256"]:
        raise BackupError(f"{dumped}: missing, truncated or altered (size or sha256 differs from the manifest)")
    return manifest


def restore(settings: Settings, folder: Path, clean: bool = False) -> dict[str, int]:
    """Restore into settings' database (created when absent); refuses a non-empty one unless `clean`.

    Returns the restored counts, after checking them (and the Alembic revision) against the manifest.
    """
    manifest = verify(folder)
    target = Target.from_settings(settings)
    with closing(target.connect("postgres")) as admin:
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute("SELECT current_setting('server_version_num')::int / 10000")
            major = cur.fetchone()[0]
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (target.database,))
            if cur.fetchone() is None:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(target.database)))
    with closing(target.connect()) as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass('public.alembic_version') IS NOT NULL")
        populated = cur.fetchone()[0]
    if populated and not clean:
        raise BackupError(
            f"database {target.database!r} already holds Assay tables: restore into a new database, or pass "
            "--clean to replace them"
        )
    pg_restore = client_binary("pg_restore", major)
    flags = ["--clean", "--if-exists"] if clean else []
    target.run([str(pg_restore), "--no-owner", "--exit-on-error", "--single-transaction", *flags,
                f"--dbname={target.database}", str(folder / manifest["dump"])])  # fmt: skip
    with closing(target.connect()) as conn, conn.cursor() as cur:
        cur.execute("SELECT version_num FROM alembic_version")
        revision = cur.fetchone()[0]
        counts = _counts(cur)
    if revision != manifest["alembic_revision"]:
        raise BackupError(f"restored revision {revision}, manifest says {manifest['alembic_revision']}")
    if manifest.get("counts_exact") and counts != manifest["counts"]:
        raise BackupError(f"restored counts {counts} differ from the manifest's {manifest['counts']}")
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.backup", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    made = sub.add_parser("dump", help="pg_dump the database (DATABASE_URL) into ROOT/assay-<UTC time>/")
    made.add_argument("--root", type=Path, default=Path("backups"))
    back = sub.add_parser("restore", help="restore a backup folder into DATABASE_URL's database")
    back.add_argument("folder", type=Path)
    back.add_argument("--clean", action="store_true", help="replace the tables of a non-empty database")
    check = sub.add_parser("verify", help="check a backup folder's dump against its manifest")
    check.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.action == "dump":
            folder = dump(get_settings(), args.root)
            print(f"backup written: {folder}\n{(folder / MANIFEST_NAME).read_text()}", end="")
        elif args.action == "restore":
            counts = restore(get_settings(), args.folder, clean=args.clean)
            print(f"restored {args.folder}: {json.dumps(counts)} (manifest checked)")
        else:
            manifest = verify(args.folder)
            print(f"{args.folder}: intact, {manifest['bytes']} bytes, counts {json.dumps(manifest['counts'])}")
    except BackupError as exc:
        print(f"backup: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
