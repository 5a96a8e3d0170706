"""The Python client and the `assay` CLI against the real stack: gunicorn, PostgreSQL, Redis, a Celery worker.

The CLI runs as a real subprocess (the installed `assay` console script), so what is tested is what a user
runs: JSONL in, JSON lines out in input order, Ctrl-C and a re-run, a 503 storm, the progress bar in a terminal.
Rows are counted in PostgreSQL per tenant to prove nothing was submitted twice.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from assay_client import (
    AsyncClient,
    Client,
    Gone,
    Job,
    NotCancelable,
    NotFound,
    Unauthorized,
    ValidationFailed,
    WaitTimeout,
)
from sqlalchemy import Engine, func, select

from store.keys import tenant_for_key
from store.tables import jobs
from tests.support import ROOT, Proc, Stack, artifact, wait_for

ASSAY = Path(sys.executable).parent / "assay"
AUDIO = ROOT / "tests" / "fixtures" / "audio"
POSITIVE = "I love this product, it works great and I am very happy with it"
NEGATIVE = "This is awful, it broke at once and support never answered"


# -- helpers -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def worker(stack: Stack) -> Proc:
    """Text and audio models on the session's queues (the default prefix, which `api_url` publishes to)."""
    return stack.worker("client", families=("text", "audio"))


@pytest.fixture
def key(new_key) -> str:
    return new_key()


def cli_env(url: str, api_key: str, home: Path) -> dict[str, str]:
    """The CLI's environment: URL and key as a user would export them; a HOME of its own (no config file)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSAY_CONFIG")}
    return {**env, "ASSAY_URL": url, "ASSAY_API_KEY": api_key, "HOME": str(home), "COLUMNS": "140"}


def assay(args: list[str], env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ASSAY), *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )


def tenant_rows(db: Engine, api_key: str) -> int:
    """Jobs in PostgreSQL for the key's tenant: the ground truth for "submitted twice"."""
    with db.connect() as conn:
        owner = tenant_for_key(conn, api_key)
        return conn.execute(select(func.count()).select_from(jobs).where(jobs.c.owner == owner)).scalar_one()


def write_jsonl(path: Path, count: int, tag: str) -> list[dict[str, Any]]:
    records = [
        {"text": f"{tag} ticket {i}: {POSITIVE if i % 2 else NEGATIVE}", "metadata": {"n": i}} for i in range(count)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return records


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def assert_in_input_order(lines: list[dict[str, Any]], source: Path, count: int) -> None:
    assert len(lines) == count
    assert [line["source"] for line in lines] == [f"{source}:{i + 1}" for i in range(count)]
    assert [line["metadata"]["n"] for line in lines] == list(range(count))
    assert len({line["id"] for line in lines}) == count


# -- the CLI -------------------------------------------------------------------------------------


def test_a_thousand_texts_from_jsonl_come_back_in_input_order(
    api_url: str, worker: Proc, key: str, db: Engine, tmp_path: Path
) -> None:
    tickets, out = tmp_path / "tickets.jsonl", tmp_path / "results.jsonl"
    write_jsonl(tickets, 1000, "order")
    env = cli_env(api_url, key, tmp_path)

    done = assay(["submit", "sentiment", "--file", str(tickets), "--wait", "--out", str(out)], env)
    assert done.returncode == 0, done.stderr
    lines = read_jsonl(out)
    assert_in_input_order(lines, tickets, 1000)
    assert {line["status"] for line in lines} == {"succeeded"}
    right = sum(line["result"]["label"] == ("positive" if i % 2 else "negative") for i, line in enumerate(lines))
    assert right > 900, f"{right} of 1000 labelled as expected"
    assert "1000 succeeded" in done.stderr and "1000 new, 0 already submitted" in done.stderr, done.stderr
    assert tenant_rows(db, key) == 1000

    again = assay(["submit", "sentiment", "--file", str(tickets), "--wait"], env)  # to stdout this time
    assert again.returncode == 0, again.stderr
    assert "0 new, 1000 already submitted" in again.stderr, again.stderr
    assert [json.loads(line)["id"] for line in again.stdout.splitlines()] == [line["id"] for line in lines]
    assert tenant_rows(db, key) == 1000


def test_interrupted_half_way_then_rerun_submits_nothing_twice(
    api_url: str, worker: Proc, key: str, db: Engine, tmp_path: Path
) -> None:
    tickets, out = tmp_path / "tickets.jsonl", tmp_path / "results.jsonl"
    write_jsonl(tickets, 1000, "resume")
    env = cli_env(api_url, key, tmp_path)
    argv = ["submit", "sentiment", "--file", str(tickets), "--wait", "--out", str(out), "--chunk-size", "20"]

    first = subprocess.Popen(
        [str(ASSAY), *argv], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    wait_for(lambda: tenant_rows(db, key) >= 300, 60, interval=0.01, what="300 jobs submitted")
    first.send_signal(signal.SIGINT)
    _, stderr = first.communicate(timeout=30)
    assert first.returncode == 130, stderr
    assert "interrupted" in stderr and "Run the same command again" in stderr
    at_interrupt = tenant_rows(db, key)
    print(f"interrupted with {at_interrupt} of 1000 jobs submitted")
    assert 300 <= at_interrupt < 1000, f"{at_interrupt} rows: the interrupt did not land half-way"
    partial = read_jsonl(out) if out.exists() else []  # --out is opened at the first result
    assert len(partial) < 1000

    rerun = assay(argv, env)
    assert rerun.returncode == 0, rerun.stderr
    lines = read_jsonl(out)
    assert_in_input_order(lines, tickets, 1000)
    assert {line["status"] for line in lines} == {"succeeded"}
    assert tenant_rows(db, key) == 1000, "a job was submitted twice"
    # what the first run printed is the same jobs the second run reports for those lines
    assert [line["id"] for line in partial] == [line["id"] for line in lines[: len(partial)]]
    assert f"{1000 - at_interrupt} new, {at_interrupt} already submitted" in rerun.stderr, rerun.stderr


def test_a_503_storm_slows_the_cli_down_but_it_finishes(stack: Stack, key: str, db: Engine, tmp_path: Path) -> None:
    """An API whose queue refuses work past 2 messages, and no worker yet: every chunk after the first
    couple is answered 503 queue_full with Retry-After until a worker drains the queue."""
    prefix = f"storm{secrets.token_hex(3)}"
    api, url = stack.api(ASSAY_QUEUE_PREFIX=prefix, ASSAY_MAX_QUEUE_DEPTH="2")
    tickets, out = tmp_path / "tickets.jsonl", tmp_path / "results.jsonl"
    write_jsonl(tickets, 200, "storm")
    began = time.monotonic()
    run = subprocess.Popen(
        [str(ASSAY), "submit", "sentiment", "--file", str(tickets), "--wait", "--out", str(out), "--chunk-size", "20"],
        env=cli_env(url, key, tmp_path),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(lambda: api.log_text().count('"status":503') >= 2, 60, what="the API refusing with 503")
    stack.worker("storm", ASSAY_QUEUE_PREFIX=prefix)
    _, stderr = run.communicate(timeout=240)
    elapsed = time.monotonic() - began

    assert run.returncode == 0, stderr
    assert_in_input_order(read_jsonl(out), tickets, 200)
    refused = api.log_text().count('"status":503')
    print(f"storm: {refused} answers 503, finished in {elapsed:.1f}s")
    assert refused >= 2
    assert "503 queue_full" in stderr and "retries" in stderr, stderr
    assert elapsed >= 5, "Retry-After: 5 was not honoured"
    assert tenant_rows(db, key) == 200, "a retried chunk created its jobs twice"


def test_a_429_storm_from_the_apis_own_rate_limits_slows_the_cli_but_it_finishes(
    stack: Stack, worker: Proc, key: str, db: Engine, tmp_path: Path
) -> None:
    """The API's per-key request limit set low (6 a second): the CLI's chunks and its 8 threads of long-polls
    are answered 429 rate_limited with Retry-After, and it waits them out."""
    api, url = stack.api(ASSAY_RATE_REQUESTS="6", ASSAY_RATE_REQUESTS_WINDOW_SECONDS="1")
    tickets, out = tmp_path / "tickets.jsonl", tmp_path / "results.jsonl"
    write_jsonl(tickets, 40, "throttled")
    began = time.monotonic()
    done = assay(
        ["submit", "sentiment", "--file", str(tickets), "--wait", "--out", str(out), "--chunk-size", "10"],
        cli_env(url, key, tmp_path),
    )
    elapsed = time.monotonic() - began
    assert done.returncode == 0, done.stderr
    assert_in_input_order(read_jsonl(out), tickets, 40)
    refused = api.log_text().count('"status":429')
    print(f"rate-limit storm: {refused} answers 429, finished in {elapsed:.1f}s")
    assert refused >= 3 and "429 rate_limited" in done.stderr, done.stderr
    assert tenant_rows(db, key) == 40, "a retried chunk created its jobs twice"


class RefusingProxy:
    """A real HTTP server in front of the real API that answers 429 to every other request, `refusals` times,
    with Retry-After as an HTTP date (as a gateway in front of Assay may), and forwards everything else
    unchanged."""

    def __init__(self, upstream: str, refusals: int) -> None:
        self.upstream, self.left, self.seen = upstream, refusals, 0
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def refuse(self) -> bool:
        with self.lock:
            self.seen += 1
            if self.left and self.seen % 2:
                self.left -= 1
                return True
            return False

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if proxy.refuse():
                    when = format_datetime(datetime.now(UTC) + timedelta(seconds=2), usegmt=True)
                    self._answer(
                        429, {"Retry-After": when}, b'{"error": {"code": "rate_limited", "message": "slow down"}}'
                    )
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                answer = requests.request(
                    self.command, proxy.upstream + self.path, headers=headers, data=body, timeout=60
                )
                passed = {k: v for k, v in answer.headers.items() if k.lower() in ("content-type", "retry-after")}
                self._answer(answer.status_code, passed, answer.content)

            def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for name, value in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_DELETE = _any  # noqa: N815 (http.server dispatches on these names)

            def log_message(self, *args: object) -> None:
                pass

        return Handler

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_429s_with_an_http_date_are_waited_out(
    api_url: str, worker: Proc, key: str, db: Engine, tmp_path: Path
) -> None:
    proxy = RefusingProxy(api_url, refusals=6)
    try:
        tickets, out = tmp_path / "tickets.jsonl", tmp_path / "results.jsonl"
        write_jsonl(tickets, 100, "limited")
        began = time.monotonic()
        done = assay(
            ["submit", "sentiment", "--file", str(tickets), "--wait", "--out", str(out), "--chunk-size", "25"],
            cli_env(proxy.url, key, tmp_path),
        )
        elapsed = time.monotonic() - began
    finally:
        proxy.close()
    assert done.returncode == 0, done.stderr
    assert_in_input_order(read_jsonl(out), tickets, 100)
    assert proxy.left == 0 and "6 retries (429 rate_limited ×6)" in done.stderr, done.stderr
    assert elapsed >= 3, "Retry-After dates were not waited for"
    assert tenant_rows(db, key) == 100


def test_the_progress_bar_in_a_real_terminal(api_url: str, worker: Proc, key: str, tmp_path: Path) -> None:
    tmux = _tmux()
    tickets, out = tmp_path / "tickets.jsonl", tmp_path / "results.jsonl"
    write_jsonl(tickets, 400, "tty")
    script = tmp_path / "run.sh"
    env = cli_env(api_url, key, tmp_path)
    own_terminal = {"TERM", "COLUMNS", "LINES", "TMUX", "TMUX_PANE", "NO_COLOR"}  # tmux's pane decides these
    exports = "".join(f"export {k}={_sh(v)}\n" for k, v in env.items() if k.isidentifier() and k not in own_terminal)
    script.write_text(
        f"{exports}cd {_sh(str(ROOT))}\n"
        f"{_sh(str(ASSAY))} submit sentiment --file {_sh(str(tickets))} --wait --out {_sh(str(out))} --chunk-size 50\n"
        "echo ASSAY-EXIT=$?\nsleep 60\n"
    )
    session = f"assay-{secrets.token_hex(3)}"
    subprocess.run([tmux, "new-session", "-d", "-s", session, "-x", "150", "-y", "12", f"bash {script}"], check=True)
    frames: list[str] = []
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            frame = subprocess.run(
                [tmux, "capture-pane", "-p", "-t", session], capture_output=True, text=True, check=True
            ).stdout
            frames.append(frame)
            if "ASSAY-EXIT=" in frame:
                break
            time.sleep(0.2)
    finally:
        subprocess.run([tmux, "kill-session", "-t", session], check=False)
    capture = artifact("terminal-capture.txt")  # var/test-artifacts/, kept after the run
    capture.write_text("\n=== frame ===\n".join(frames))
    print(f"terminal capture saved to {capture}")

    last = frames[-1]
    assert "ASSAY-EXIT=0" in last, last
    bar = next(line for line in last.splitlines() if "sentiment" in line)
    assert "━" in bar and "400/400" in bar and "✓ 400 succeeded" in bar and "✗ 0 failed" in bar, last
    live = [f for f in frames if "━" in f and "/400" in f and "400/400" not in f]
    assert live, "no frame caught the bar part-way"
    assert len(read_jsonl(out)) == 400


def _tmux() -> str:
    """tmux, installed with apt-get if missing (tests skip, saying why, if that cannot be done)."""
    found = shutil.which("tmux")
    if found:
        return found
    if shutil.which("apt-get") and os.geteuid() == 0:
        quiet = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for step in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "tmux"]):
            subprocess.run(step, capture_output=True, timeout=600, check=False, env=quiet)
        found = shutil.which("tmux")
    if not found:
        pytest.skip("tmux is not installed and apt-get could not install it: no terminal to capture")
    return found


def _sh(value: str) -> str:
    return "'" + value.replace("'", "'\"'\"'") + "'"


def test_audio_folder_by_extension(api_url: str, worker: Proc, key: str, tmp_path: Path) -> None:
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    for name in ("numbers.wav", "hello.wav"):
        shutil.copy(AUDIO / name, recordings / name)
    (recordings / "notes.txt").write_text("not audio: skipped by extension")
    done = assay(["submit", "transcription", "--dir", str(recordings), "--wait"], cli_env(api_url, key, tmp_path))
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [Path(line["source"]).name for line in lines] == ["hello.wav", "numbers.wav"]
    assert "hello" in lines[0]["result"]["text"].lower()
    assert re.search(r"\b(seven|7) days\b", lines[1]["result"]["text"].lower())


def test_job_options_from_the_cli_and_the_client(api_url: str, worker: Proc, key: str, tmp_path: Path) -> None:
    """`{"cache": false}` and `{"return_diagnostics": true}` were curl-only: neither the CLI nor the
    client sent job options."""
    env = cli_env(api_url, key, tmp_path)
    text = f"{POSITIVE} ({secrets.token_hex(3)})"
    done = assay(["submit", "sentiment", text, "--wait", "--options", '{"return_diagnostics": true}'], env)
    assert done.returncode == 0, done.stderr
    (line,) = [json.loads(row) for row in done.stdout.splitlines()]
    assert line["result"]["label"] == "positive" and line["result"]["diagnostics"]["batch_size"] >= 1, line
    refused = assay(["submit", "sentiment", text, "--columns", '{"caller": "a"}'], env)
    assert refused.returncode == 1 and "call-record files" in refused.stderr, refused.stderr

    with Client(api_url, key) as client:
        client.wait(client.submit("sentiment", text).id, timeout=30)  # options are in the key: plain, this time
        (hit,) = client.submit_many("sentiment", [text])
        (ran,) = client.submit_many("sentiment", [text], options={"cache": False})
        single = client.submit("sentiment", text, options={"cache": False})
    assert hit.status == "succeeded", hit
    assert ran.status == "queued" and single.status == "queued", "cache: false was not sent"


def test_jobs_analyses_and_errors_from_the_cli(api_url: str, worker: Proc, key: str, tmp_path: Path) -> None:
    env = cli_env(api_url, key, tmp_path)
    listed = assay(["analyses", "--json"], env)
    assert listed.returncode == 0, listed.stderr
    assert "sentiment" in {json.loads(line)["name"] for line in listed.stdout.splitlines()}
    as_module = subprocess.run(
        [sys.executable, "-m", "assay_client", "analyses", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert as_module.returncode == 0 and as_module.stdout == listed.stdout, as_module.stderr
    table = assay(["analyses"], env)  # piped, as here: rich assumed 80 columns and cut model names short
    models = {json.loads(line)["model"] for line in listed.stdout.splitlines()}
    assert all(model in table.stdout for model in models), table.stdout

    submitted = assay(["submit", "sentiment", POSITIVE, NEGATIVE, "--wait"], env)
    assert submitted.returncode == 0, submitted.stderr
    first, second = (json.loads(line) for line in submitted.stdout.splitlines())
    assert (first["source"], first["result"]["label"]) == ("arg:1", "positive")
    assert (second["source"], second["result"]["label"]) == ("arg:2", "negative")

    got = assay(["jobs", "get", first["id"], "--wait", "5"], env)
    assert json.loads(got.stdout)["id"] == first["id"]
    page = assay(["jobs", "list", "--status", "succeeded", "--limit", "1"], env)
    assert [json.loads(line)["id"] for line in page.stdout.splitlines()] in ([first["id"]], [second["id"]])

    refused = assay(["jobs", "cancel", first["id"]], env)
    assert refused.returncode == 1 and "409 job_not_cancelable" in refused.stderr, refused.stderr
    erased = assay(["jobs", "delete", first["id"]], env)
    assert json.loads(erased.stdout)["erased_at"] and json.loads(erased.stdout)["result"] is None
    assert assay(["jobs", "webhooks", first["id"]], env).stdout == ""
    # The same submit again resumes: the erased job comes back without its result, which is no success.
    again = assay(["submit", "sentiment", POSITIVE, NEGATIVE, "--wait"], env)
    assert again.returncode == 2 and "1 erased" in again.stderr, (again.returncode, again.stderr)
    assert [json.loads(line)["id"] for line in again.stdout.splitlines()] == [first["id"], second["id"]]
    # Several ids: a refused one does not stop the others.
    several = assay(["jobs", "delete", "job_nope", second["id"]], env)
    assert several.returncode == 1 and "job_nope: 404 job_not_found" in several.stderr, several.stderr
    assert [json.loads(line)["id"] for line in several.stdout.splitlines()] == [second["id"]]

    missing = assay(["jobs", "get", "job_nope"], env)
    assert missing.returncode == 1 and "404 job_not_found" in missing.stderr
    invalid = assay(["submit", "no_such_analysis", "hello"], env)
    assert invalid.returncode == 1 and "invalid_jobs" in invalid.stderr and "unknown_analysis" in invalid.stderr
    nokey = assay(["analyses"], {**env, "ASSAY_API_KEY": "assay_wrong"})
    assert nokey.returncode == 1 and "401 invalid_api_key" in nokey.stderr


def test_errors_exit_1_and_a_failed_run_keeps_the_last_results(api_url: str, tmp_path: Path, new_key) -> None:
    """2 means "some jobs failed" (README): a usage error is 1 like every other error, and a run that fails
    before its first result (a wrong key here) leaves the --out of the last run as it was."""
    env = cli_env(api_url, new_key(), tmp_path)
    usage = assay(["submit", "sentiment"], env)
    assert usage.returncode == 1 and "exactly one of them" in usage.stderr, usage.stderr
    bad_url = assay(["--url", "localhost:1", "submit", "sentiment", "hi"], env, timeout=30)
    assert bad_url.returncode == 1 and "must look like http" in bad_url.stderr, bad_url.stderr
    out = tmp_path / "results.jsonl"
    out.write_text('{"kept": true}\n')
    wrong = assay(["submit", "sentiment", "hello", "--out", str(out)], {**env, "ASSAY_API_KEY": "assay_wrong"})
    assert wrong.returncode == 1 and "401" in wrong.stderr, wrong.stderr
    assert out.read_text() == '{"kept": true}\n'
    nowhere = assay(["submit", "sentiment", "hello", "--out", str(tmp_path / "no" / "r.jsonl")], env)
    assert nowhere.returncode == 1 and "--out" in nowhere.stderr and "Traceback" not in nowhere.stderr

    # A refused chunk after accepted ones: the error says which line, and that earlier chunks were accepted.
    lines = tmp_path / "mixed.jsonl"
    lines.write_text("".join(json.dumps({"text": "" if i == 7 else f"fine {i}"}) + "\n" for i in range(10)))
    mixed = assay(["submit", "sentiment", "--file", str(lines), "--chunk-size", "4"], env)
    assert mixed.returncode == 1, mixed.stderr
    assert "input entries 4-7; the 4 before them were accepted" in mixed.stderr, mixed.stderr
    details = json.loads(mixed.stderr.split("details: ", 1)[1].splitlines()[0])
    assert details[0]["index"] == 7 and details[0]["source"] == f"{lines}:8", details

    # A check of the whole body (a NUL character) names its entry by place, not index: the line is named too.
    nul = tmp_path / "nul.jsonl"
    nul.write_text("".join(json.dumps({"text": "bad \u0000 one" if i == 6 else f"ok {i}"}) + "\n" for i in range(8)))
    refused = assay(["submit", "sentiment", "--file", str(nul), "--chunk-size", "4", "--fresh"], env)
    assert refused.returncode == 1 and "invalid_characters" in refused.stderr, refused.stderr
    details = json.loads(refused.stderr.split("details: ", 1)[1].splitlines()[0])
    assert details["index"] == 6 and details["source"] == f"{nul}:7", details


def test_a_wait_that_runs_out_still_writes_the_accepted_jobs(stack: Stack, key: str, tmp_path: Path) -> None:
    """No worker reads this API's queue: the jobs stay queued, and their ids must not be lost with the wait."""
    _, url = stack.api(ASSAY_QUEUE_PREFIX=f"idle{secrets.token_hex(3)}")
    out = tmp_path / "late.jsonl"
    run = assay(
        ["submit", "sentiment", "late one", "late two", "--wait", "--wait-timeout", "2", "--out", str(out)],
        cli_env(url, key, tmp_path),
    )
    assert run.returncode == 1 and "wait_timeout" in run.stderr and "2 not final" in run.stderr, run.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(line["source"], line["status"]) for line in lines] == [("arg:1", "queued"), ("arg:2", "queued")]
    assert all(line["id"].startswith("job_") for line in lines)


def test_keys_create_list_revoke_from_the_cli(api_url: str, tmp_path: Path, session_env: dict[str, str]) -> None:
    """Admin commands talk to the test database (DATABASE_URL) through store.keys, like store.cli."""
    env = {**cli_env(api_url, "", tmp_path), "DATABASE_URL": session_env["DATABASE_URL"]}
    tenant = f"cli-{secrets.token_hex(3)}"
    created = assay(["keys", "create", "--tenant", tenant, "--json"], env)
    assert created.returncode == 0, created.stderr
    issued = json.loads(created.stdout)
    user = {**env, "ASSAY_API_KEY": issued["key"]}
    assert assay(["analyses"], user).returncode == 0

    listed = [json.loads(line) for line in assay(["keys", "list"], env).stdout.splitlines()]
    assert any(row["id"] == issued["key_id"] and row["name"] == tenant for row in listed)
    assert "secret" not in json.dumps(listed) and issued["key"] not in json.dumps(listed)

    revoked = assay(["keys", "revoke", issued["key_id"]], env)
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    assert assay(["keys", "revoke", issued["key_id"]], env).returncode == 1
    assert "401" in assay(["analyses"], user).stderr  # ASSAY_AUTH_CACHE_SECONDS=0 in tests


def test_keys_without_the_server_code_say_so(tmp_path: Path) -> None:
    """Run from a folder without the server's code on the path: a clear message, not a traceback."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [str(ASSAY), "keys", "list"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1
    assert "server code" in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_keys_with_the_database_down_or_misconfigured_say_so_in_one_line(tmp_path: Path) -> None:
    """`assay keys list` printed 139 lines of SQLAlchemy and psycopg2 frames when nothing answered."""
    for database_url, message in [
        ("postgresql://postgres@127.0.0.1:1/assay", "Error: PostgreSQL: "),
        ("foo", "Error: invalid configuration: DATABASE_URL"),
    ]:
        done = subprocess.run(
            [str(ASSAY), "keys", "list"],
            env={**os.environ, "DATABASE_URL": database_url},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 1, done.stderr
        assert done.stderr.startswith(message) and "Traceback" not in done.stderr, done.stderr


# -- the library ---------------------------------------------------------------------------------


def test_client_submit_wait_and_the_job_lifecycle(api_url: str, worker: Proc, key: str) -> None:
    with Client(api_url, key) as client:
        job = client.submit("sentiment", POSITIVE, metadata={"ticket": 7})
        assert job.status == "queued" and job.metadata == {"ticket": 7}
        done = client.wait(job.id, timeout=30)
        assert isinstance(done, Job) and done.is_final and done.result and done.result["label"] == "positive"
        assert done.completed_at and done.completed_at >= done.created_at

        again = client.submit("sentiment", POSITIVE, metadata={"ticket": 7}, idempotency_key=f"k-{job.id}")
        replay = client.submit("sentiment", POSITIVE, metadata={"ticket": 7}, idempotency_key=f"k-{job.id}")
        assert replay.id == again.id

        with pytest.raises(NotCancelable) as refused:
            client.cancel(done.id)
        assert refused.value.code == "job_not_cancelable" and refused.value.status == 409
        erased = client.delete(done.id)
        assert erased.erased_at and erased.result is None
        with pytest.raises(Gone) as gone:  # an erased job answers 410, what remains in the details
            client.get(done.id)
        assert gone.value.details["job"]["erased_at"] and gone.value.details["job"]["result"] is None
        with pytest.raises(Gone):
            client.webhook_attempts(done.id)
        assert {a.name for a in client.analyses()} >= {"sentiment", "transcription"}

        with pytest.raises(NotFound) as missing:
            client.get("job_does_not_exist")
        assert missing.value.code == "job_not_found"
        with pytest.raises(ValidationFailed) as invalid:
            client.submit_many("sentiment", ["fine", "   "])
        assert invalid.value.code == "invalid_jobs" and invalid.value.details[0]["index"] == 1
    with Client(api_url, "assay_not_a_key") as stranger, pytest.raises(Unauthorized):
        stranger.analyses()


def test_client_submit_many_keeps_order_and_replays_by_content(
    api_url: str, worker: Proc, key: str, db: Engine
) -> None:
    texts = [f"item {i}: {POSITIVE if i % 3 else NEGATIVE}" for i in range(120)]
    chunks: list[bool] = []
    with Client(api_url, key) as client:
        first = client.submit_many(
            "sentiment", texts, chunk_size=50, keys="content", on_chunk=lambda c: chunks.append(c.created)
        )
        assert chunks == [True, True, True]
        second = client.submit_many(
            "sentiment", texts, chunk_size=50, keys="content", on_chunk=lambda c: chunks.append(c.created)
        )
        assert chunks[3:] == [False, False, False] and [j.id for j in second] == [j.id for j in first]
        assert tenant_rows(db, key) == 120

        finished = client.wait_many(first, timeout=120)
        assert [j.id for j in finished] == [j.id for j in first] and all(j.is_final for j in finished)
        streamed = {j.id for j in client.iter_results([j.id for j in first], timeout=60)}
        assert streamed == {j.id for j in first}

        listed = list(client.list_jobs(page_size=25))  # five pages, through cursors
        assert len(listed) == 120 and len({j.id for j in listed}) == 120
        assert [j.created_at for j in listed] == sorted((j.created_at for j in listed), reverse=True)
        assert len(list(client.list_jobs(status="succeeded", limit=30))) == 30


def test_async_client(api_url: str, worker: Proc, key: str) -> None:
    import asyncio

    async def scenario() -> list[Job]:
        async with AsyncClient(api_url, key) as client:
            jobs = await client.submit_many("sentiment", [POSITIVE, NEGATIVE, POSITIVE], chunk_size=2)
            single = await client.submit("sentiment", NEGATIVE)
            return await client.wait_many([*jobs, single], timeout=60)

    done = asyncio.run(scenario())
    assert [j.result["label"] for j in done if j.result] == ["positive", "negative", "positive", "negative"]


def test_waiting_keeps_to_a_server_whose_longest_wait_is_below_the_clients_long_poll(stack: Stack, key: str) -> None:
    """A deployment that lowers ASSAY_MAX_WAIT_SECONDS below the client's long_poll (30 s) refused every
    `?wait=30` with 400 invalid_wait: Client.wait, wait_many and `assay submit --wait` failed at once. The
    refusal names the limit; the client keeps to it from then on."""
    _, url = stack.api(ASSAY_QUEUE_PREFIX=f"mw{secrets.token_hex(3)}", ASSAY_MAX_WAIT_SECONDS="1")
    with Client(url, key) as client:  # no worker serves this prefix: the job stays queued
        job = client.submit("sentiment", "waiting on a short leash")
        started = time.monotonic()
        with pytest.raises(WaitTimeout):
            client.wait(job.id, timeout=3)
        assert time.monotonic() - started < 10
        assert client.long_poll == 1
        assert client.get(job.id, wait=30).status == "queued"  # kept to the limit, no second refusal

    async def waited_async() -> float:
        async with AsyncClient(url, key) as aclient:
            with pytest.raises(WaitTimeout):
                await aclient.wait(job.id, timeout=2)
            return aclient.long_poll

    assert asyncio.run(waited_async()) == 1
