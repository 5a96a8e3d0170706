"""Operations: /metrics on its own listener, and the restore drill (backup → database dropped → restore).

One API on a database of this module's own, with ASSAY_METRICS_BIND set as in production.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import psycopg2
import pytest
import requests
from psycopg2 import sql

from config.settings import ROOT
from store.keys import create_key
from store.outbox import create_events
from store.worker import Outcome, claim_jobs, finish_jobs
from tests.support import Client, Stack, free_port, wait_for


@pytest.fixture(scope="module")
def ops(stack: Stack, fresh_database):
    url, db = fresh_database()
    with db.begin() as conn:
        key = create_key(conn, "ops").secret
    metrics_port = free_port()
    env = {
        "DATABASE_URL": url,
        "ASSAY_QUEUE_PREFIX": f"o{secrets.token_hex(3)}",
        "ASSAY_METRICS_BIND": f"127.0.0.1:{metrics_port}",
        "ASSAY_WEBHOOK_ALLOW_PRIVATE": "true",
    }
    _, api = stack.api(**env)
    return {"url": url, "db": db, "client": Client(api, key), "metrics": f"http://127.0.0.1:{metrics_port}",
            "api": api}  # fmt: skip


def test_metrics_are_served_only_on_their_own_listener(ops) -> None:
    public, metrics = ops["api"], ops["metrics"]
    assert requests.get(f"{public}/health", timeout=5).status_code == 200
    hidden = requests.get(f"{public}/metrics", timeout=5)
    assert hidden.status_code == 404 and hidden.json()["error"]["code"] == "not_found"
    served = requests.get(f"{metrics}/metrics", timeout=5)
    assert served.status_code == 200 and "assay_http_requests_total" in served.text
    # The metrics port is no back door to the API.
    assert requests.get(f"{metrics}/v1/analyses", timeout=5).status_code == 404
    assert requests.get(f"{metrics}/health", timeout=5).status_code == 404


def _backup_cli(*args: str, database_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url, "ASSAY_ENVIRONMENT": "test"}
    return subprocess.run([sys.executable, "-m", "deploy.backup", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip


def _seen(client: Client, ids: list[str]) -> dict[str, tuple[dict, list]]:
    """Each job and its webhook events, as the API serves them."""
    return {
        job_id: (client.get(f"/v1/jobs/{job_id}").json(), client.get(f"/v1/jobs/{job_id}/webhooks").json()["data"])
        for job_id in ids
    }


def test_restore_drill_brings_back_every_job_and_webhook_event(ops, tmp_path: Path) -> None:
    client, db, url = ops["client"], ops["db"], ops["url"]
    hook = {"url": "http://127.0.0.1:9/hook", "events": ["completed"]}
    done = [client.submit(f"restore drill {i}: great service", webhook=hook)["id"] for i in range(12)]
    waiting = [client.submit(f"restore drill, still queued {i}")["id"] for i in range(3)]
    with db.begin() as conn:  # what a worker writes when it finishes them: results, then webhook events
        claimed = claim_jobs(conn, done, 60)
        finish_jobs(conn, [Outcome(c.id, c.attempt, result={"label": "positive", "score": 0.98}) for c in claimed])
        create_events(conn, done, None)
    before = _seen(client, done + waiting)
    assert all(job["status"] == "succeeded" and len(events) == 1 for job, events in (before[i] for i in done))
    assert all(before[i][0]["status"] == "queued" for i in waiting)

    made = _backup_cli("dump", "--root", str(tmp_path), database_url=url)
    assert made.returncode == 0, made.stderr
    (folder,) = tmp_path.iterdir()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["counts"]["jobs"] == 15 and manifest["counts"]["webhook_events"] == 12
    assert manifest["counts_exact"] is True and manifest["sha256"] and manifest["alembic_revision"]

    db.dispose()
    name = url.rsplit("/", 1)[1]
    with closing(psycopg2.connect(url.rsplit("/", 1)[0] + "/postgres")) as admin:
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
    lost = client.get(f"/v1/jobs/{done[0]}")
    assert lost.status_code == 503, lost.text

    restored = _backup_cli("restore", str(folder), database_url=url)
    assert restored.returncode == 0, restored.stderr
    assert '"jobs": 15' in restored.stdout and '"webhook_events": 12' in restored.stdout

    wait_for(lambda: client.get(f"/v1/jobs/{done[0]}").status_code == 200, 30, what="the API serving again")
    assert _seen(client, done + waiting) == before

    again = _backup_cli("restore", str(folder), database_url=url)
    assert again.returncode == 1 and "already holds Assay tables" in again.stderr
    (folder / "assay.dump").write_bytes((folder / "assay.dump").read_bytes()[:-10])
    broken = _backup_cli("verify", str(folder), database_url=url)
    assert broken.returncode == 1 and "truncated or altered" in broken.stderr


def test_backup_refuses_a_database_without_the_assay_schema(ops, tmp_path: Path) -> None:
    bare = ops["url"].rsplit("/", 1)[0] + "/postgres"
    refused = _backup_cli("dump", "--root", str(tmp_path), database_url=bare)
    assert refused.returncode == 1 and "no Assay schema" in refused.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_kubernetes_backup_job_writes_what_restore_reads(ops, tmp_path: Path) -> None:
    """The CronJob's script (from the rendered manifests) against a real database, restored by deploy.backup."""
    from sqlalchemy.engine import make_url

    from deploy.manifests import render

    (script,) = [d["data"]["backup.sh"] for d in render("cpu") if d["metadata"]["name"] == "assay-backup-script"]
    source = make_url(ops["url"])
    libpq = {"PGHOST": source.host, "PGPORT": str(source.port or 5432), "PGUSER": source.username or "",
             "PGDATABASE": source.database, "BACKUP_ROOT": str(tmp_path), "KEEP_DAYS": "14"}  # fmt: skip
    ran = subprocess.run(["/bin/sh", "-c", script], env={**os.environ, **libpq}, capture_output=True, text=True,
                         timeout=120, check=False)  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    (folder,) = tmp_path.iterdir()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["counts"]["jobs"] >= 1 and len(manifest["sha256"]) == 64

    copy_url = f"{ops['url']}_copy"
    restored = _backup_cli("restore", str(folder), database_url=copy_url)
    try:
        assert restored.returncode == 0, restored.stderr
        assert f'"jobs": {manifest["counts"]["jobs"]}' in restored.stdout
    finally:
        with closing(psycopg2.connect(ops["url"].rsplit("/", 1)[0] + "/postgres")) as admin:
            admin.autocommit = True
            with admin.cursor() as cur:
                cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(copy_url.rsplit("/", 1)[1])))  # fmt: skip


def _requests_counted(api: str) -> float:
    """The API's assay_http_requests_total, summed over every route and status."""
    text = requests.get(f"{api}/metrics", timeout=5).text
    counted = [line for line in text.splitlines() if line.startswith("assay_http_requests_total{")]
    return sum(float(line.rsplit(" ", 1)[1]) for line in counted)


def test_a_graceful_reload_keeps_the_api_metrics(stack: Stack, fresh_database) -> None:
    """SIGHUP makes gunicorn's master read gunicorn.conf.py again, which emptied the metrics folder the live
    workers write into: every counter and histogram of the API dropped to nothing at each reload."""
    url, _ = fresh_database()
    proc, api = stack.api(DATABASE_URL=url, ASSAY_QUEUE_PREFIX=f"h{secrets.token_hex(3)}")
    for _ in range(20):
        assert requests.get(f"{api}/health", timeout=5).status_code == 200
    before = _requests_counted(api)
    assert before >= 20

    booted = proc.log_text().count("Booting worker")
    os.kill(proc.pid, signal.SIGHUP)
    wait_for(lambda: proc.log_text().count("Booting worker") >= booted + 2, 30, what="the reload's new workers")
    wait_for(lambda: proc.log_text().count("Worker exiting") >= 2, 40, what="the old workers gone")
    assert requests.get(f"{api}/health", timeout=5).status_code == 200
    assert _requests_counted(api) >= before, "the reload dropped the API's metrics"


def test_a_reload_ends_open_event_streams_at_once(stack: Stack, new_key) -> None:
    """An event stream never ends on its own: each reload (or max_requests recycle) held the old worker for
    the 30 s graceful timeout, then cut the stream mid-response. Now it ends cleanly and the client resumes."""
    import threading
    import time

    proc, api = stack.api(ASSAY_QUEUE_PREFIX=f"d{secrets.token_hex(3)}", ASSAY_API_WORKERS="1")
    key = new_key()
    opened, ended, failure = threading.Event(), threading.Event(), []

    def read() -> None:
        try:
            with requests.get(
                f"{api}/v1/events", headers={"Authorization": f"Bearer {key}"}, stream=True, timeout=60
            ) as response:
                for _ in response.iter_content(chunk_size=None):
                    opened.set()
            ended.set()  # the body ended as a whole response: no ChunkedEncodingError
        except Exception as exc:
            failure.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert opened.wait(15), "the stream did not open"
    os.kill(proc.pid, signal.SIGHUP)
    hupped = time.monotonic()
    assert ended.wait(20), f"the stream was still open 20 s after the reload: {failure}"
    took = time.monotonic() - hupped
    wait_for(lambda: "Worker exiting" in proc.log_text(), 20, what="the old worker gone")
    assert took < 10 and not failure, (took, failure)
    assert "graceful timeout" not in proc.log_text()
    assert requests.get(f"{api}/v1/events", headers={"Authorization": f"Bearer {key}"}, stream=True, timeout=10).ok


def test_the_api_opens_no_control_socket(stack: Stack, tmp_path: Path) -> None:
    """Gunicorn's control socket (`$XDG_RUNTIME_DIR` or `~/.gunicorn/gunicorn.ctl`) is one path per user:
    each master on a host took it over from the one before, so gunicornc reached whichever started last."""
    proc, api = stack.api(
        ASSAY_QUEUE_PREFIX=f"c{secrets.token_hex(3)}", HOME=str(tmp_path), XDG_RUNTIME_DIR=str(tmp_path)
    )
    assert requests.get(f"{api}/health", timeout=5).status_code == 200
    assert proc.alive()
    assert not list(tmp_path.rglob("*.ctl")), list(tmp_path.rglob("*"))


def test_a_second_api_on_the_same_address_leaves_the_live_ones_metrics(stack: Stack) -> None:
    """Every gunicorn master emptied var/prometheus/api-<bind>/ when it read gunicorn.conf.py, before it
    tried to bind: a second `make api` (or `make run`) on a taken port failed to bind, but first wiped
    the folder the live API's workers write into, and its /metrics lost every counter for good."""
    from workers.processes import api_process

    proc, api = stack.api(ASSAY_QUEUE_PREFIX=f"m{secrets.token_hex(3)}")
    for _ in range(20):
        assert requests.get(f"{api}/health", timeout=5).status_code == 200
    before = _requests_counted(api)
    assert before >= 20

    second = stack.start(api_process(), {"ASSAY_API_BIND": api.removeprefix("http://")}, name="api-again")
    wait_for(lambda: not second.alive(), 60, what="the second gunicorn to give up on the taken address")
    assert "in use" in second.log_text()
    assert proc.alive()
    assert requests.get(f"{api}/health", timeout=5).status_code == 200
    assert _requests_counted(api) >= before, "the second gunicorn wiped the live API's metrics"
