"""cdr_fraud through the HTTP API with a real tabular worker: generated call records, bad files, parameters."""

from __future__ import annotations

import base64
import gzip
import json
import os
import re
import resource
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from bench.cdr_data import Truth, generate, write
from config.settings import Settings
from tests.support import Client, Proc, Stack, free_port, wait_for


@pytest.fixture(scope="module")
def metrics_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def tabular(stack: Stack, metrics_port: int) -> Proc:
    return stack.tabular(ASSAY_WORKER_METRICS_PORT=str(metrics_port))


@pytest.fixture(scope="module")
def calls(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, Truth]:
    """~4,000 records of one day: 4 SIM boxes, 2 call centres, 2 auto-diallers, 2 borderline callers, people."""
    columns, truth = generate(4000, sim_boxes=4, intensity=80, call_centres=2, auto_diallers=2, borderline=2, days=1)
    path = tmp_path_factory.mktemp("cdr") / "calls.csv"
    write(columns, path)
    return path.read_bytes(), truth


def finished(client: Client, job: dict[str, Any]) -> dict[str, Any]:
    done = client.get(f"/v1/jobs/{job['id']}", params={"wait": 30}).json()
    assert done["status"] in ("succeeded", "failed"), done
    return done


def upload(client: Client, data: bytes, name: str = "calls.csv", **fields: str) -> requests.Response:
    return client.post("/v1/jobs", data={"analysis": "cdr_fraud", **fields}, files={"file": (name, data)})


def flagged(job: dict[str, Any]) -> set[str]:
    return {entry["caller"] for entry in job["result"]["flagged_callers"]}


def test_planted_sim_boxes_are_flagged_and_nothing_else(client: Client, tabular: Proc, calls, metrics_port) -> None:
    data, truth = calls
    response = upload(client, gzip.compress(data), "calls.csv.gz")
    assert response.status_code == 202, response.text
    job = finished(client, response.json())
    assert job["status"] == "succeeded", job
    result = job["result"]
    assert flagged(job) == set(truth.sim_boxes)  # precision = recall = 1.0 with the catalog's defaults
    assert result["totals"]["records"] == truth.records and result["totals"]["rejected_rows"] == 0
    assert result["parameters"] == {
        "time_window_hours": 24.0,
        "min_unique_destinations": 50,
        "max_avg_duration_seconds": 3.0,
        "min_calls": 0,
    }
    listed = next(a for a in client.get("/v1/analyses").json()["data"] if a["name"] == "cdr_fraud")["parameters"]
    assert {k: (v, type(v)) for k, v in listed.items()} == {k: (v, type(v)) for k, v in result["parameters"].items()}
    risks = [entry["risk_score"] for entry in result["flagged_callers"]]
    assert risks == sorted(risks, reverse=True)
    evidence = result["flagged_callers"][0]["evidence"]
    assert evidence["unique_destinations"] >= 50 and evidence["avg_duration_seconds"] <= 3.0
    assert evidence["window_end"] > evidence["window_start"] and len(evidence["first_destinations"]) == 5

    def counted() -> bool:
        text = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
        records = re.search(r"^assay_cdr_records_total ([0-9.e+]+)$", text, re.M)
        alerts = re.search(r"^assay_cdr_alerts_total ([0-9.e+]+)$", text, re.M)
        last = re.search(r"^assay_cdr_last_detection_timestamp_seconds ([0-9.e+]+)$", text, re.M)
        return (
            bool(records and alerts and last)
            and float(records.group(1)) >= truth.records
            and float(alerts.group(1)) >= len(truth.sim_boxes)
        )

    wait_for(counted, 10, what="cdr metrics")


def test_a_pipe_separated_export_is_read_like_the_comma_one(client: Client, tabular: Proc, calls) -> None:
    """A switch's `|`-separated export, uploaded as is: the same SIM boxes (it was a 422, one column found)."""
    data, truth = calls
    response = upload(client, data.replace(b",", b"|"), "calls.txt")
    assert response.status_code == 202, response.text
    done = finished(client, response.json())
    assert done["status"] == "succeeded" and flagged(done) == set(truth.sim_boxes), done
    assert done["result"]["totals"]["records"] == truth.records


def test_parameters_and_column_names_come_from_the_request(client: Client, tabular: Proc, calls) -> None:
    data, truth = calls
    renamed = data.replace(b"caller,callee,start_time,duration", b"a_number,b_number,start,secs", 1)
    entry = {
        "analysis": "cdr_fraud",
        "input": {
            "cdr_base64": base64.b64encode(renamed).decode(),
            "columns": {"caller": "a_number", "callee": "b_number", "start_time": "start", "duration": "secs"},
        },
    }
    lower = {**entry, "parameters": {"min_unique_destinations": 40}}
    longer = {**entry, "parameters": {"max_avg_duration_seconds": 10_000}}
    response = client.post("/v1/jobs/batch", json={"jobs": [entry, lower, longer]})
    assert response.status_code == 202, response.text
    default, with_lower, with_longer = (finished(client, job) for job in response.json()["data"])
    assert flagged(default) == set(truth.sim_boxes)
    assert flagged(with_lower) == set(truth.sim_boxes) | set(truth.borderline)  # 40-49 destinations
    assert set(truth.call_centres) <= flagged(with_longer)  # long calls no longer excuse them
    assert with_lower["result"]["parameters"]["min_unique_destinations"] == 40


HEADER = b"caller,callee,start_time,duration\n"
GOOD_ROW = b"111,222,2026-11-01T10:00:00Z,4\n"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"caller,callee,when\n1,2,3\n", 422, "invalid_input"),  # a column missing: seen in the header
        (b"caller," + b"x" * 200_000, 422, "invalid_input"),  # one enormous first line
        (gzip.compress(b"caller,callee," + b"y" * 5_000_000), 422, "invalid_input"),  # the same, gzipped
        (b"", 422, "empty_file"),
        (gzip.compress(b"", mtime=0), 422, "empty_file"),  # was invalid_input "the CSV header has columns []"
        (b"\x1f\x8b\x08\x00garbage", 422, "invalid_input"),  # gzip magic, no gzip
    ],
)
def test_bad_files_seen_at_submission_are_4xx(client: Client, body: bytes, status: int, code: str) -> None:
    response = upload(client, body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


def test_bad_requests_are_4xx(client: Client) -> None:
    good = HEADER + GOOD_ROW
    for fields, code in [
        ({"parameters": '{"min_unique_destinations": -1}'}, "invalid_parameters"),
        ({"parameters": '{"bogus": 1}'}, "invalid_parameters"),
        ({"columns": '{"cell": "x"}'}, "validation_error"),
        ({"columns": "not json"}, "validation_error"),
    ]:
        response = upload(client, good, **fields)
        assert response.status_code == 422 and response.json()["error"]["code"] == code, response.text
    response = client.post("/v1/jobs", json={"analysis": "cdr_fraud", "input": {"cdr_base64": "!!"}})
    assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_base64"


def _json_lines(rows: int = 60) -> bytes:
    return b"".join(
        b'{"caller": "111", "callee": "%d", "start_time": "2026-11-01T10:%02d:00Z", "duration": 1}\n' % (i, i % 60)
        for i in range(rows)
    )


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("bom.csv", b"\xef\xbb\xbf" + HEADER + GOOD_ROW * 3),
        (
            "crlf_quoted.csv",
            b'"caller","callee","start_time","duration"\r\n' + b'"111","222","2026-11-01T10:00:00Z","4"\r\n' * 3,
        ),
        ("header_only.csv", HEADER),
        ("capitalised.csv", HEADER.title() + GOOD_ROW * 3),  # `Caller,Callee,Start_Time,Duration`
        ("trailing_delimiter.csv", HEADER.replace(b"\n", b",\n") + GOOD_ROW.replace(b"\n", b",\n") * 3),
        ("bom.jsonl", b"\xef\xbb\xbf" + _json_lines()),  # Windows tools (PowerShell 5, Notepad) write one
        ("bom_crlf.jsonl", b"\xef\xbb\xbf" + _json_lines().replace(b"\n", b"\r\n")),
        ("bom.jsonl.gz", gzip.compress(b"\xef\xbb\xbf" + _json_lines())),
    ],
)
def test_odd_but_legal_files_are_read(client: Client, tabular: Proc, name: str, body: bytes) -> None:
    """A byte order mark, CRLF, quoted fields, a header alone: accepted at submission, so read by the worker.
    A JSON lines file with a BOM was accepted (the sniffer skips it) and then failed its job, as DuckDB's JSON
    reader refuses a BOM ("line 2: Malformed JSON ... byte order mark (BOM) is not supported")."""
    response = upload(client, body, name)
    assert response.status_code == 202, response.text
    job = finished(client, response.json())
    assert job["status"] == "succeeded", job["error"]
    expected = 60 if "jsonl" in name else body.count(b"\n") - 1
    assert job["result"]["totals"]["records"] == expected, job["result"]["totals"]
    if "jsonl" in name:
        assert flagged(job) == {"111"}


def test_requests_that_make_no_job_leave_no_file(client: Client, tabular: Proc, settings: Settings) -> None:
    good = {"analysis": "cdr_fraud", "input": {"cdr_base64": base64.b64encode(HEADER + GOOD_ROW).decode()}}
    bad = {**good, "parameters": {"min_calls": -1}}
    response = client.post("/v1/jobs/batch", json={"jobs": [good, bad]})
    assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_jobs"
    key = {"Idempotency-Key": f"cdr-{secrets.token_hex(4)}"}
    first = client.post("/v1/jobs", json=good, headers=key)
    again = client.post("/v1/jobs", json=good, headers=key)
    assert (first.status_code, again.status_code) == (202, 200) and first.json()["id"] == again.json()["id"]
    assert finished(client, first.json())["status"] == "succeeded"
    spool: Path = settings.cdr_upload_dir  # the rejected batch's file, the replay's, the finished job's: all gone
    wait_for(lambda: not any(spool.iterdir()), 5, what="no spooled file left")


def test_erasing_a_job_deletes_its_spooled_file_at_once(client: Client, settings: Settings, db) -> None:
    """DELETE erases the input: a queued job's spooled file went only with the sweep, 15 min later."""
    from sqlalchemy import text

    response = upload(client, HEADER + GOOD_ROW)
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    with db.connect() as conn:
        name = conn.execute(text("SELECT input->'cdr'->>'file' FROM jobs WHERE id = :id"), {"id": job_id}).scalar_one()
    path: Path = settings.cdr_upload_dir / name
    erased = client.delete(f"/v1/jobs/{job_id}")
    assert erased.status_code == 200 and erased.json()["erased_at"] is not None, erased.text
    assert not path.exists(), "the erased job's call-record file is still in the spool folder"


def _bomb_later() -> bytes:
    return HEADER + GOOD_ROW * 10 + b"1," + b"9" * 200_000 + b",2026-11-01T10:00:00Z,3\n"


def _corrupt_gzip() -> bytes:
    packed = bytearray(gzip.compress(HEADER + GOOD_ROW * 50_000))
    packed[len(packed) // 2 : len(packed) // 2 + 64] = b"\x00" * 64
    return bytes(packed)


@pytest.mark.parametrize(
    ("body", "line"),
    [
        (HEADER + GOOD_ROW * 56 + b"111,223,yesterday,4\n", 58),  # an unparsable time
        (HEADER + GOOD_ROW * 9 + b"111,223,2026-11-01T10:00:00Z,-2\n", 11),  # a negative duration
        (HEADER + GOOD_ROW * 4 + b"111,223,2026-11-01T10:00:00Z,4,extra\n", 6),  # a row too long
        (_bomb_later(), 12),  # a CSV bomb: one enormous line deep in the file
        (_json_lines(5) + b'{"caller": "111",,}\n' + _json_lines(5), 6),  # malformed JSON: its line, not the next
        # A NUL in a number: its result could not be written (jsonb holds no \u0000), the job stayed running.
        (HEADER + GOOD_ROW + b"".join(b"1\x001,%d,2026-11-01T10:00:00Z,1\n" % i for i in range(60)), 3),
        (_corrupt_gzip(), None),
    ],
)
def test_bad_rows_fail_the_job_with_their_line(client: Client, tabular: Proc, body: bytes, line: int | None) -> None:
    response = upload(client, body, "calls.csv.gz" if body[:2] == b"\x1f\x8b" else "calls.csv")
    assert response.status_code == 202, response.text
    job = finished(client, response.json())
    assert job["status"] == "failed" and job["error"]["code"] == "invalid_input", job
    if line is not None:
        assert f"line {line}" in job["error"]["message"], job["error"]
    assert tabular.alive()


def test_the_worker_keeps_serving_and_files_do_not_pile_up(
    client: Client, tabular: Proc, settings: Settings, calls
) -> None:
    data, truth = calls
    job = finished(client, upload(client, data).json())
    assert job["status"] == "succeeded" and flagged(job) == set(truth.sim_boxes)
    assert tabular.alive()
    spool: Path = settings.cdr_upload_dir
    wait_for(lambda: not any(spool.iterdir()), 5, what="spooled files deleted")
    listed = client.get("/v1/analyses").json()["data"]
    entry = next(a for a in listed if a["name"] == "cdr_fraud")
    assert entry["queue"].endswith(".tabular") and entry["input"] == "cdr"


def test_the_sweep_deletes_only_stale_files_no_live_job_names(settings: Settings, db, redis_client) -> None:
    from pipeline.uploads import sweep_uploads
    from store.api import JobSpec, cancel_job, create_jobs
    from store.keys import ensure_tenant
    from tests.integration.helpers import worker_context

    spool: Path = settings.cdr_upload_dir
    spool.mkdir(parents=True, exist_ok=True)
    needed, orphan, fresh = (spool / f"cdr-{'0' * 16}-{i:012x}.csv" for i in range(3))
    for path in (needed, orphan, fresh):
        path.write_bytes(HEADER)
    hour_ago = time.time() - 3600
    for path in (needed, orphan):
        os.utime(path, (hour_ago, hour_ago))
    with db.begin() as conn:
        owner = ensure_tenant(conn, f"sweep-{secrets.token_hex(3)}")
        (job,) = create_jobs(conn, owner, [JobSpec("cdr_fraud", {"cdr": {"file": needed.name}})]).rows  # queued
    assert sweep_uploads(worker_context(settings, db, redis_client)) == 1
    assert needed.exists() and fresh.exists() and not orphan.exists()
    with db.begin() as conn:
        cancel_job(conn, owner, job["id"])
    needed.unlink()
    fresh.unlink()


def test_large_uploads_are_spooled_once_and_never_left_behind(
    client: Client, tabular: Proc, settings: Settings, tmp_path: Path
) -> None:
    """Bodies over 1 MiB are written by the form parser straight into the upload folder (app/spool_upload.py):
    a good one becomes the job's file, a rejected one and a finished job's are deleted."""
    columns, truth = generate(30_000, sim_boxes=3, intensity=80, days=1, seed=7)
    path = tmp_path / "big.csv"
    write(columns, path)
    data = path.read_bytes()
    assert len(data) > 1 << 20
    job = finished(client, upload(client, data).json())
    assert job["status"] == "succeeded" and flagged(job) == set(truth.sim_boxes), job
    assert job["result"]["totals"]["records"] == truth.records
    rejected = upload(client, b"caller,callee,when\n" + b"1,2,3\n" * 300_000)  # 1.8 MB, a column missing
    assert rejected.status_code == 422 and rejected.json()["error"]["code"] == "invalid_input"
    bad_field = upload(client, data, parameters="not json")
    assert bad_field.status_code == 422 and bad_field.json()["error"]["code"] == "validation_error"
    spool: Path = settings.cdr_upload_dir
    wait_for(lambda: not any(spool.iterdir()), 5, what="no spooled file left")


def test_the_file_can_be_the_request_body(client: Client, tabular: Proc, calls, settings: Settings, tmp_path) -> None:
    """`curl --data-binary @calls.csv -H 'Content-Type: text/csv' '/v1/jobs?analysis=cdr_fraud'`: the fields
    as query parameters. A body past the write-behind step (8 MiB) is synced to disk as it arrives."""
    data, truth = calls
    job = client.post(
        "/v1/jobs",
        params={"analysis": "cdr_fraud", "parameters": '{"min_unique_destinations": 40}', "metadata": '{"batch": 7}',
                "filename": "calls.csv.gz"},
        data=gzip.compress(data),
        headers={"Content-Type": "application/gzip"},
    )  # fmt: skip
    assert job.status_code == 202, job.text
    done = finished(client, job.json())
    assert flagged(done) == set(truth.sim_boxes) | set(truth.borderline), done
    assert done["metadata"] == {"batch": 7} and done["result"]["totals"]["records"] == truth.records

    columns, big_truth = generate(150_000, sim_boxes=3, intensity=80, days=1, seed=11)
    path = tmp_path / "big.csv"
    write(columns, path)
    assert path.stat().st_size > 8 << 20
    with path.open("rb") as body:  # streamed, as curl does
        big = client.post("/v1/jobs", params={"analysis": "cdr_fraud"}, data=body, headers={"Content-Type": "text/csv"})
    assert big.status_code == 202, big.text
    big_done = finished(client, big.json())
    assert flagged(big_done) == set(big_truth.sim_boxes), big_done
    assert big_done["result"]["totals"]["records"] == big_truth.records

    def raw(body: bytes, content_type: str = "text/csv", **params: str) -> requests.Response:
        return client.post("/v1/jobs", params=params, data=body, headers={"Content-Type": content_type})

    for response, status, code in [
        (raw(data), 422, "validation_error"),  # no analysis
        (raw(data, analysis="sentiment"), 422, "validation_error"),  # takes text
        (raw(data, analysis="nope"), 422, "unknown_analysis"),
        (raw(data, analysis="cdr_fraud", parameters="not json"), 422, "validation_error"),
        (raw(data, analysis="cdr_fraud", parameters='{"min_calls": -1}'), 422, "invalid_parameters"),
        (raw(b"caller,callee,when\n" + b"1,2,3\n" * 300_000, analysis="cdr_fraud"), 422, "invalid_input"),
        (raw(b"", analysis="cdr_fraud"), 422, "empty_file"),
        (raw(data, "text/plain", analysis="cdr_fraud"), 415, "unsupported_media_type"),
    ]:
        assert response.status_code == status, response.text
        assert response.json()["error"]["code"] == code, response.text
    spool: Path = settings.cdr_upload_dir
    wait_for(lambda: not any(spool.iterdir()), 5, what="no spooled file left")


def test_the_cli_uploads_call_records_one_job_per_file_and_resumes(
    client: Client, tabular: Proc, calls, tmp_path: Path
) -> None:
    """`assay submit cdr_fraud --file/--dir`: the CLI asks what the analysis takes and uploads each file."""
    data, truth = calls
    folder = tmp_path / "records"
    folder.mkdir()
    (folder / "a.csv").write_bytes(data)
    (folder / "b.csv.gz").write_bytes(gzip.compress(data))
    (folder / "notes.md").write_text("not call records")
    env = {
        **os.environ,
        "ASSAY_URL": client.base,
        "ASSAY_API_KEY": client.session.headers["Authorization"].split()[1],
        "HOME": str(tmp_path),
    }
    out = tmp_path / "results.jsonl"
    argv = [str(Path(sys.executable).parent / "assay"), "submit", "cdr_fraud", "--dir", str(folder), "--wait"]

    def run() -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*argv, "--out", str(out)], env=env, capture_output=True, text=True, timeout=180, check=False
        )
        assert done.returncode == 0, done.stderr
        return done

    first = run()
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [Path(line["source"]).name for line in lines] == ["a.csv", "b.csv.gz"]
    assert all(line["status"] == "succeeded" and flagged(line) == set(truth.sim_boxes) for line in lines), lines
    assert "2 new, 0 already submitted" in first.stderr, first.stderr
    again = run()
    assert "0 new, 2 already submitted" in again.stderr, again.stderr
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == [line["id"] for line in lines]


def test_an_upload_the_spool_folder_cannot_hold_is_refused_in_the_json_shape_and_leaves_nothing(
    stack: Stack, new_key, db, settings: Settings, calls, tmp_path: Path
) -> None:
    """A file-size limit on the API workers fails the spool's write with EFBIG (as a full disk fails it with
    ENOSPC, app/errors.py answers that 503): 413 `request_too_large`, not a 500, no job and no file left, for
    a multipart upload and a raw body; a smaller file is accepted as usual."""
    spool = tmp_path / "spool"
    api, url = stack.api(ASSAY_UPLOAD_DIR=str(spool))
    limit = 1 << 20
    workers = subprocess.run(["pgrep", "-P", str(api.pid)], capture_output=True, text=True, check=False).stdout.split()
    assert workers
    for pid in workers:
        resource.prlimit(int(pid), resource.RLIMIT_FSIZE, (limit, limit))
    columns, _ = generate(60_000, sim_boxes=2, call_centres=0, auto_diallers=0, borderline=0, days=1)
    path = tmp_path / "calls.csv"
    write(columns, path)
    data = path.read_bytes()
    assert len(data) > 2 * limit
    client = Client(url, new_key("disk-full"))
    multipart = upload(client, data)
    raw = client.post("/v1/jobs", params={"analysis": "cdr_fraud"}, data=data, headers={"Content-Type": "text/csv"})
    for response in (multipart, raw):
        assert response.status_code == 413, response.text
        assert response.json()["error"]["code"] == "request_too_large", response.text
    assert client.get("/v1/jobs").json()["data"] == []
    assert not [p.name for p in spool.iterdir()]
    small = upload(client, calls[0][:200_000].rsplit(b"\n", 1)[0] + b"\n")  # under the limit: accepted as usual
    assert small.status_code == 202, small.text


def test_the_cli_refuses_call_records_it_cannot_upload_and_says_how(client: Client, tmp_path: Path) -> None:
    """Standard input, a file name given as a text argument, no file at all, a missing file: each became
    text jobs (a 422 per CSV line) or a wrong message; each is now exit 1 with what to do."""
    env = {
        **os.environ,
        "ASSAY_URL": client.base,
        "ASSAY_API_KEY": client.session.headers["Authorization"].split()[1],
        "HOME": str(tmp_path),
    }
    assay = str(Path(sys.executable).parent / "assay")
    (tmp_path / "calls.csv").write_text("caller,callee,start_time,duration\n1,2,1700000000,3\n")
    cases = [
        (["--file", "-"], "caller,callee\n", "not standard input"),
        ([str(tmp_path / "calls.csv")], None, "--file PATH or --dir DIR"),
        ([], None, "--file PATH or --dir DIR"),
        (["--file", str(tmp_path / "nope.csv")], None, "nope.csv: no such file"),
    ]
    for args, stdin, message in cases:
        done = subprocess.run(
            [assay, "submit", "cdr_fraud", *args],
            input=stdin,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 1 and message in done.stderr, (args, done.returncode, done.stderr)
        assert "invalid_jobs" not in done.stderr, done.stderr


def test_the_cli_and_the_client_send_columns_and_parameters(
    client: Client, tabular: Proc, calls, tmp_path: Path
) -> None:
    """A switch export names its columns a_number, b_number, ...: neither the CLI nor the Python client
    could say so (nor change a threshold), so such a file could not be analysed without curl."""
    from assay_client import Client as AssayClient

    data, truth = calls
    header, _, rest = data.partition(b"\n")
    renamed = header.replace(b"caller", b"a_number").replace(b"callee", b"b_number") + b"\n" + rest
    path = tmp_path / "switch.csv"
    path.write_bytes(renamed)
    columns = {"caller": "a_number", "callee": "b_number"}
    key = client.session.headers["Authorization"].split()[1]
    env = {**os.environ, "ASSAY_URL": client.base, "ASSAY_API_KEY": key, "HOME": str(tmp_path)}
    argv = [
        str(Path(sys.executable).parent / "assay"), "submit", "cdr_fraud", "--file", str(path), "--wait",
        "--columns", json.dumps(columns), "--parameters", json.dumps({"min_unique_destinations": 1000}),
    ]  # fmt: skip
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr
    (line,) = [json.loads(text) for text in done.stdout.splitlines()]
    assert line["status"] == "succeeded" and flagged(line) == set(), line  # no caller reaches 1,000 callees

    with AssayClient(client.base, api_key=key) as assay:
        job, created = assay.submit_file("cdr_fraud", path, columns=columns)
        assert created
        final = assay.wait(job.id, timeout=60)
    assert final.status == "succeeded" and {c["caller"] for c in final.result["flagged_callers"]} == set(
        truth.sim_boxes
    )


def test_a_tabular_worker_killed_mid_detection_leaves_no_spill_folder_behind(
    stack: Stack, fresh_database, tmp_path: Path
) -> None:
    """The tabular worker is SIGKILLed while DuckDB runs (a container's memory limit does this): the job runs
    again on the next worker, and the dead run's spill folder under var/duckdb-tmp goes too. It was left for
    good, each kill adding up to a file's size of spill files until the disk (or the pod's emptyDir) was full.
    Its own database, queues and var folder: the module's tabular worker must not take the job."""
    columns, truth = generate(2_000_000, sim_boxes=3, intensity=80, days=1, seed=11)
    path = tmp_path / "big.csv"
    write(columns, path)
    url, _engine = fresh_database()
    var = tmp_path / "var"
    env = {
        "DATABASE_URL": url,
        "ASSAY_QUEUE_PREFIX": f"cdrkill{secrets.token_hex(3)}",
        "ASSAY_VAR_DIR": str(var),
        "ASSAY_CDR_THREADS": "1",  # slow enough to be killed mid-run
        "ASSAY_CDR_MEMORY_LIMIT_MB": "128",
    }
    _, api = stack.api(**env)
    from store.keys import create_key

    with _engine.begin() as conn:
        user = Client(api, create_key(conn, f"cdrkill-{secrets.token_hex(3)}").secret)
    spill = var / "duckdb-tmp"
    runs = lambda: sorted(p.name for p in spill.iterdir() if p.is_dir()) if spill.is_dir() else []  # noqa: E731
    worker = stack.tabular(name="tabular-killed", **env)
    with path.open("rb") as file:
        answer = user.post("/v1/jobs", data={"analysis": "cdr_fraud"}, files={"file": ("big.csv", file)})
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["id"]
    wait_for(runs, 60, interval=0.005, what="the detection's spill folder")
    worker.kill()
    left = runs()
    assert left and user.get(f"/v1/jobs/{job_id}").json()["status"] == "running", "killed mid-detection"
    stack.sweeper(**env)  # requeues the job once its lease lapses
    stack.tabular(name="tabular-next", **env)
    job = wait_for(
        lambda: (done := user.get(f"/v1/jobs/{job_id}", params={"wait": 20}).json())["status"] != "running" and done,
        90,
        what="the job run again",
    )
    assert job["status"] == "succeeded" and job["attempts"] == 2, job
    assert flagged(job) == set(truth.sim_boxes)
    wait_for(lambda: not any(spill.iterdir()), 10, what=f"no spill folder left of {left}")


def test_a_gzip_bomb_fails_its_job_before_the_worker_inflates_it(stack: Stack, new_key, calls) -> None:
    """The upload limit counts compressed bytes: ~100 KB of gzip (one row repeated) inflated to 30 MB, and
    the tabular worker read every row of it (2 GiB, the default limit, inflates to ~2 TB: hours of a worker,
    DuckDB spilling to disk until it is full). Past ASSAY_MAX_CDR_INFLATED_BYTES the job fails at once with
    `input_too_large`; a real file under it runs as before."""
    prefix = f"bomb{secrets.token_hex(3)}"
    limit = 2 << 20
    _, url = stack.api(ASSAY_QUEUE_PREFIX=prefix)
    stack.tabular(
        name="tabular-bomb",
        ASSAY_QUEUE_PREFIX=prefix,
        ASSAY_MAX_CDR_INFLATED_BYTES=str(limit),
        ASSAY_WORKER_METRICS_PORT=str(free_port()),
    )
    user = Client(url, new_key())
    row = b"2348000000001,2349000000002,2026-09-21T00:00:00Z,1.5\n"
    bomb = gzip.compress(b"caller,callee,start_time,duration\n" + row * 600_000, 9)
    assert len(bomb) < 200_000 < limit < 30_000_000
    response = upload(user, bomb, "calls.csv.gz")
    assert response.status_code == 202, response.text
    job = finished(user, response.json())
    assert job["status"] == "failed" and job["error"]["code"] == "input_too_large", job
    data, truth = calls
    good = finished(user, upload(user, gzip.compress(data), "calls.csv.gz").json())
    assert good["status"] == "succeeded" and good["result"]["totals"]["records"] == truth.records, good
