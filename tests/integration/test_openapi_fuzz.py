"""Schemathesis, every check, against the real gunicorn's /openapi.json: the spec states what the server does.

Positive data must be accepted, negative data refused, every status and response body documented, 405s
carry `Allow`, nothing answers 5xx, and a deleted job is not served again (erased jobs answer 410).
Configuration, with why each exception is there: tests/integration/schemathesis.toml.
"""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

from tests.support import BIN_DIR, Stack

CONFIG = Path(__file__).with_name("schemathesis.toml")


def test_schemathesis_finds_no_failure(stack: Stack, new_key, tmp_path) -> None:
    _, url = stack.api(
        ASSAY_QUEUE_PREFIX=f"fuzz{secrets.token_hex(3)}",
        ASSAY_MAX_WAIT_SECONDS="2",  # long-polls on jobs nobody runs end quickly
        ASSAY_WEBHOOK_ALLOW_PRIVATE="true",  # generated hosts do not resolve; the URL syntax is still checked
    )
    done = subprocess.run(
        [
            str(BIN_DIR / "schemathesis"),
            "--config-file", str(CONFIG),
            "run", f"{url}/openapi.json",
            "--checks", "all",
            "--max-examples", "25",
            "--exclude-operation-id", "streamEvents",  # never ends by design (tests/integration/test_events.py)
            "--request-timeout", "15",
            "-H", f"Authorization: Bearer {new_key()}",
            "--report", "junit", "--report-dir", str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )  # fmt: skip
    summary = done.stdout[-6000:]
    assert done.returncode == 0, summary
    assert "failure" not in summary.split("SUMMARY")[-1].lower().replace("0 failures", ""), summary
