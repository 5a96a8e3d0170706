"""The bad-input sweep: every route, JSON and multipart, answers malformed, hostile or merely wrong input with a
4xx in the one error shape, creates nothing, and never reaches the database with something it would refuse
(NUL, unpaired surrogates, NaN, numbers too large, nesting too deep)."""

from __future__ import annotations

import base64
import gzip
import json
import secrets
import socket
import time
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from sqlalchemy import Engine, func, select

from store.tables import jobs
from tests.support import Client, Stack

OK = {"analysis": "sentiment", "input": {"text": "fine"}}
WAV = (  # a valid 0.1 s WAV, for cases that must get past the audio probe
    b"RIFF$\x0c\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x80>\x00\x00\x00}\x00\x00\x02\x00\x10\x00data"
    b"\x00\x0c\x00\x00" + b"\x00\x00" * 1600
)


def job(**changes: Any) -> dict[str, Any]:
    return {**OK, **changes}


def raw(text: str | bytes, content_type: str = "application/json") -> dict[str, Any]:
    return {"data": text.encode() if isinstance(text, str) else text, "headers": {"Content-Type": content_type}}


NESTED_2000 = '{"analysis":"sentiment","input":{"text":"x"},"metadata":' + '{"a":' * 2000 + "1" + "}" * 2000 + "}"
NESTED_40 = {"a": 1}
for _ in range(40):
    NESTED_40 = {"a": NESTED_40}

JSON_CASES: list[tuple[str, dict[str, Any], int, str | None]] = [
    # (name, request kwargs for POST /v1/jobs, status, code or None for "any 4xx code")
    ("nul in text", {"json": job(input={"text": "a\x00b"})}, 422, "invalid_characters"),
    ("nul in metadata value", {"json": job(metadata={"k": "v\x00"})}, 422, "invalid_characters"),
    ("nul in metadata key", {"json": job(metadata={"k\x00": "v"})}, 422, "invalid_characters"),
    ("nul deep in metadata", {"json": job(metadata={"a": [{"b": ["\x00"]}]})}, 422, "invalid_characters"),
    ("nul in analysis", {"json": job(analysis="sentiment\x00")}, 422, "invalid_characters"),
    ("lone surrogate in text", raw('{"analysis":"sentiment","input":{"text":"\\ud800"}}'), 422, "invalid_characters"),
    ("lone surrogate in key", raw('{"analysis":"sentiment","input":{"text":"x"},"metadata":{"\\udfff":1}}'), 422, None),
    ("2000 levels of nesting", raw(NESTED_2000), 400, "invalid_json"),
    ("40 levels of nesting", {"json": job(metadata=NESTED_40)}, 422, "validation_error"),
    ("NaN", raw('{"analysis":"sentiment","input":{"text":"x"},"metadata":{"n":NaN}}'), 400, "invalid_json"),
    ("Infinity", raw('{"analysis":"sentiment","input":{"text":"x"},"metadata":{"n":Infinity}}'), 400, "invalid_json"),
    ("-Infinity", raw('{"analysis":"sentiment","input":{"text":"x"},"metadata":{"n":-Infinity}}'), 400, "invalid_json"),
    ("1e400", raw('{"analysis":"sentiment","input":{"text":"x"},"metadata":{"n":1e400}}'), 400, "invalid_json"),
    ("5000-digit int", raw('{"analysis":"sentiment","input":{"text":"x"},"metadata":{"n":' + "9" * 5000 + "}}"), 400,
     "invalid_json"),
    ("duplicate keys", raw('{"analysis":"sentiment","analysis":"toxicity","input":{"text":"x"}}'), 400,
     "invalid_json"),
    ("invalid utf-8", raw(b'{"analysis":"sentiment","input":{"text":"\xff\xfe"}}'), 400, "invalid_json"),
    ("truncated json", raw('{"analysis":"sentiment","input":{"te'), 400, "invalid_json"),
    ("trailing garbage", raw('{"analysis":"sentiment","input":{"text":"x"}} trailing'), 400, "invalid_json"),
    ("comment", raw('{"analysis":"sentiment", /* hi */ "input":{"text":"x"}}'), 400, "invalid_json"),
    ("single quotes", raw("{'analysis':'sentiment'}"), 400, "invalid_json"),
    ("empty body", raw(""), 400, "invalid_json"),
    ("whitespace body", raw("   "), 400, "invalid_json"),
    ("null body", raw("null"), 422, "validation_error"),
    ("number body", raw("123"), 422, "validation_error"),
    ("string body", raw('"sentiment"'), 422, "validation_error"),
    ("true body", raw("true"), 422, "validation_error"),
    ("array body", {"json": [OK]}, 422, "validation_error"),
    ("text/plain", raw("hello", "text/plain"), 415, "unsupported_media_type"),
    ("form urlencoded", raw("analysis=sentiment", "application/x-www-form-urlencoded"), 415, None),
    ("no content type", {"data": b'{"analysis":"sentiment"}', "headers": {"Content-Type": ""}}, 415, None),
    ("xml", raw("<job/>", "application/xml"), 415, None),
    ("gzip-encoded json", {"data": gzip.compress(json.dumps(OK).encode()),
     "headers": {"Content-Type": "application/json", "Content-Encoding": "gzip"}}, 415, "unsupported_media_type"),
    ("analysis null", {"json": job(analysis=None)}, 422, None),
    ("analysis number", {"json": job(analysis=5)}, 422, "unknown_analysis"),
    ("analysis list", {"json": job(analysis=["sentiment"])}, 422, "unknown_analysis"),
    ("analysis object", {"json": job(analysis={"name": "sentiment"})}, 422, "unknown_analysis"),
    ("analysis empty", {"json": job(analysis="")}, 422, "unknown_analysis"),
    ("analysis huge", {"json": job(analysis="x" * 10_000)}, 422, "unknown_analysis"),
    ("analysis missing", {"json": {"input": {"text": "x"}}}, 422, "validation_error"),
    ("input missing", {"json": {"analysis": "sentiment"}}, 422, "validation_error"),
    ("input null", {"json": job(input=None)}, 422, "validation_error"),
    ("input list", {"json": job(input=["x"])}, 422, "validation_error"),
    ("input string", {"json": job(input="x")}, 422, "validation_error"),
    ("text null", {"json": job(input={"text": None})}, 422, "validation_error"),
    ("text number", {"json": job(input={"text": 5})}, 422, "validation_error"),
    ("text bool", {"json": job(input={"text": True})}, 422, "validation_error"),
    ("text list", {"json": job(input={"text": ["a"]})}, 422, "validation_error"),
    ("text object", {"json": job(input={"text": {"a": 1}})}, 422, "validation_error"),
    ("text empty", {"json": job(input={"text": ""})}, 422, "empty_text"),
    ("text blank", {"json": job(input={"text": " \t\n"})}, 422, "empty_text"),
    ("text zero-width", {"json": job(input={"text": "\u200b" * 5})}, 422, "empty_text"),
    ("text bidi controls", {"json": job(input={"text": "\u202e\u2066"})}, 422, "empty_text"),
    ("text marks alone", {"json": job(input={"text": "\u0301" * 10})}, 422, "empty_text"),
    ("text private use", {"json": job(input={"text": "\ue000\uf8ff"})}, 422, "empty_text"),
    ("text too long", {"json": job(input={"text": "x" * 20_001})}, 413, "input_too_large"),
    ("input extra field", {"json": job(input={"text": "x", "lang": "en"})}, 422, "validation_error"),
    ("input audio for text analysis", {"json": job(input={"audio_base64": "AAAA"})}, 422, "validation_error"),
    ("top-level extra field", {"json": job(priority=1)}, 422, "validation_error"),
    ("metadata null", {"json": job(metadata=None)}, 422, "validation_error"),
    ("metadata list", {"json": job(metadata=[1])}, 422, "validation_error"),
    ("metadata string", {"json": job(metadata="x")}, 422, "validation_error"),
    ("metadata too large", {"json": job(metadata={"k": "v" * 20_000})}, 413, "metadata_too_large"),
    ("webhook string", {"json": job(webhook="http://example.com")}, 422, "validation_error"),
    ("webhook url number", {"json": job(webhook={"url": 5})}, 422, "validation_error"),
    ("webhook no url", {"json": job(webhook={"events": ["completed"]})}, 422, "validation_error"),
    ("webhook ipv6 broken", {"json": job(webhook={"url": "http://[abc/"})}, 422, "invalid_webhook_url"),
    ("webhook javascript", {"json": job(webhook={"url": "javascript:alert(1)"})}, 422, "invalid_webhook_url"),
    ("webhook no host", {"json": job(webhook={"url": "http://"})}, 422, "invalid_webhook_url"),
    ("webhook spaces", {"json": job(webhook={"url": "http://exa mple.com/"})}, 422, "invalid_webhook_url"),
    ("webhook nul", {"json": job(webhook={"url": "http://example.com/\x00"})}, 422, "invalid_characters"),
    ("webhook port", {"json": job(webhook={"url": "http://example.com:99999/"})}, 422, "invalid_webhook_url"),
    ("webhook credentials", {"json": job(webhook={"url": "http://u:p@example.com/"})}, 422,
     "invalid_webhook_url"),
    ("webhook too long", {"json": job(webhook={"url": "http://example.com/" + "a" * 3000})}, 422,
     "invalid_webhook_url"),
    ("webhook loopback", {"json": job(webhook={"url": "http://127.0.0.1/x"})}, 422, "webhook_url_forbidden"),
    ("webhook metadata ip", {"json": job(webhook={"url": "http://169.254.169.254/"})}, 422,
     "webhook_url_forbidden"),
    ("webhook events empty", {"json": job(webhook={"url": "https://example.com", "events": []})}, 422,
     "validation_error"),
    ("webhook events bad", {"json": job(webhook={"url": "https://example.com", "events": ["done"]})}, 422,
     "validation_error"),
    ("webhook events string", {"json": job(webhook={"url": "https://example.com", "events": "completed"})}, 422,
     "validation_error"),
    ("webhook extra", {"json": job(webhook={"url": "https://example.com", "secret": "x"})}, 422,
     "validation_error"),
    ("audio not base64", {"json": {"analysis": "transcription", "input": {"audio_base64": "%%%"}}}, 422,
     "invalid_base64"),
    ("audio number", {"json": {"analysis": "transcription", "input": {"audio_base64": 5}}}, 422,
     "validation_error"),
    ("audio empty", {"json": {"analysis": "transcription", "input": {"audio_base64": ""}}}, 422, None),
    ("audio not audio", {"json": {"analysis": "transcription", "input": {"audio_base64": "aGVsbG8="}}}, 422,
     "invalid_audio"),
    # The file as the request body, the fields as query parameters (app/uploads.py).
    ("raw audio not audio", {"params": {"analysis": "transcription"}, "data": b"not audio at all" * 10,
     "headers": {"Content-Type": "audio/wav"}}, 422, "invalid_audio"),
    ("raw big not audio", {"params": {"analysis": "transcription"}, "data": b"RIFF" + b"\x00" * (2 << 20),
     "headers": {"Content-Type": "audio/wav"}}, 422, "invalid_audio"),
    ("raw audio empty", {"params": {"analysis": "transcription"}, "data": b"",
     "headers": {"Content-Type": "audio/wav"}}, 422, "empty_audio"),
    ("raw no analysis", {"data": WAV, "headers": {"Content-Type": "audio/wav"}}, 422, "validation_error"),
    ("raw text analysis", {"params": {"analysis": "sentiment"}, "data": WAV,
     "headers": {"Content-Type": "application/octet-stream"}}, 422, "validation_error"),
    ("raw metadata not json", {"params": {"analysis": "transcription", "metadata": "{x"}, "data": WAV,
     "headers": {"Content-Type": "audio/wav"}}, 422, "validation_error"),
    ("raw filename nul", {"params": {"analysis": "transcription", "filename": "a\x00.wav"}, "data": WAV,
     "headers": {"Content-Type": "audio/wav"}}, 400, "invalid_parameter"),
    ("audio filename nul", {"json": {"analysis": "transcription", "input": {
        "audio_base64": base64.b64encode(WAV).decode(), "filename": "a\x00.wav"}}}, 422, "invalid_characters"),
    ("audio filename long", {"json": {"analysis": "transcription", "input": {
        "audio_base64": base64.b64encode(WAV).decode(), "filename": "a" * 300}}}, 422, "validation_error"),
    ("audio with text", {"json": {"analysis": "transcription", "input": {"text": "hello"}}}, 422,
     "validation_error"),
    ("idempotency key too long", {"json": OK, "headers": {"Idempotency-Key": "k" * 300}}, 400,
     "invalid_idempotency_key"),
    ("idempotency key tab", {"json": OK, "headers": {"Idempotency-Key": "k\tk"}}, 400, "invalid_idempotency_key"),
]  # fmt: skip

MULTIPART_CASES: list[tuple[str, dict[str, Any], dict[str, Any], int, str | None]] = [
    # (name, form fields, files, status, code)
    ("no file", {"analysis": "transcription"}, {}, 422, "missing_file"),
    # over 1 MiB: the part is spooled to a file (app/spool_upload.py) and read back for the probe
    ("big not audio", {"analysis": "transcription"}, {"file": ("a.wav", b"RIFF" + b"\x00" * (2 << 20))}, 422,
     "invalid_audio"),
    ("no analysis", {}, {"file": ("a.wav", WAV)}, 422, "validation_error"),
    ("text analysis", {"analysis": "sentiment"}, {"file": ("a.wav", WAV)}, 422, "validation_error"),
    ("unknown analysis", {"analysis": "astrology"}, {"file": ("a.wav", WAV)}, 422, "unknown_analysis"),
    ("nul analysis", {"analysis": "transcription\x00"}, {"file": ("a.wav", WAV)}, 400, "invalid_parameter"),
    ("metadata not json", {"analysis": "transcription", "metadata": "{x"}, {"file": ("a.wav", WAV)}, 422,
     "validation_error"),
    ("metadata list", {"analysis": "transcription", "metadata": "[1]"}, {"file": ("a.wav", WAV)}, 422,
     "validation_error"),
    ("metadata nul", {"analysis": "transcription", "metadata": '{"k":"\\u0000"}'}, {"file": ("a.wav", WAV)}, 422,
     "validation_error"),
    ("metadata NaN", {"analysis": "transcription", "metadata": '{"k":NaN}'}, {"file": ("a.wav", WAV)}, 422,
     "validation_error"),
    ("metadata deep", {"analysis": "transcription", "metadata": "[" * 3000 + "]" * 3000},
     {"file": ("a.wav", WAV)}, 422, "validation_error"),
    ("webhook not json", {"analysis": "transcription", "webhook": "http://x"}, {"file": ("a.wav", WAV)}, 422,
     "validation_error"),
    ("webhook bad url", {"analysis": "transcription", "webhook": '{"url":"http://[abc/"}'},
     {"file": ("a.wav", WAV)}, 422, "invalid_webhook_url"),
    ("empty file", {"analysis": "transcription"}, {"file": ("a.wav", b"")}, 422, "empty_audio"),
    ("garbage file", {"analysis": "transcription"}, {"file": ("a.wav", b"not audio at all" * 10)}, 422,
     "invalid_audio"),
    ("filename nul", {"analysis": "transcription"}, {"file": ("a\x00.wav", WAV)}, 400, "invalid_parameter"),
]  # fmt: skip

BATCH_CASES: list[tuple[str, dict[str, Any], int, str | None]] = [
    ("jobs string", {"json": {"jobs": "x"}}, 422, "validation_error"),
    ("jobs object", {"json": {"jobs": {"a": OK}}}, 422, "validation_error"),
    ("jobs empty", {"json": {"jobs": []}}, 422, "empty_batch"),
    ("jobs of numbers", {"json": {"jobs": [1, 2]}}, 422, "invalid_jobs"),
    ("jobs of nulls", {"json": {"jobs": [None]}}, 422, "invalid_jobs"),
    ("too many jobs", {"json": {"jobs": [OK] * 1001}}, 413, "batch_too_large"),
    ("nul in an entry", {"json": {"jobs": [OK, job(input={"text": "\x00"})]}}, 422, "invalid_characters"),
    ("one bad entry", {"json": {"jobs": [OK, job(input={"text": ""})]}}, 422, "invalid_jobs"),
    ("extra key", {"json": {"jobs": [OK], "priority": 1}}, 422, "validation_error"),
    ("list body", {"json": [OK]}, 422, "validation_error"),
    ("batch webhook bad", {"json": {"jobs": [OK], "webhook": {"url": "http://[abc/"}}}, 422,
     "invalid_webhook_url"),
    ("batch webhook string", {"json": {"jobs": [OK], "webhook": "x"}}, 422, "validation_error"),
    ("nested too deep", {"json": {"jobs": [job(metadata=NESTED_40)]}}, 422, "validation_error"),
    ("duplicate keys", raw('{"jobs":[],"jobs":[]}'), 400, "invalid_json"),
    ("multipart", {"files": {"file": ("a.wav", WAV)}, "data": {"analysis": "transcription"}}, 415,
     "unsupported_media_type"),
]  # fmt: skip

READ_CASES: list[tuple[str, str, str, dict[str, Any] | None, int, str | None]] = [
    ("nul id", "GET", "/v1/jobs/job_%00", None, 404, "job_not_found"),
    ("long id", "GET", "/v1/jobs/job_" + "a" * 5000, None, 404, "job_not_found"),
    ("bare prefix", "GET", "/v1/jobs/job_", None, 404, "job_not_found"),
    ("unicode id", "GET", "/v1/jobs/job_%C3%A9t%C3%A9", None, 404, "job_not_found"),
    ("other prefix", "GET", "/v1/jobs/msg_abc", None, 404, "job_not_found"),
    ("wait negative", "GET", "/v1/jobs/job_abc", {"wait": "-1"}, 400, "invalid_wait"),
    ("wait too long", "GET", "/v1/jobs/job_abc", {"wait": "31"}, 400, "invalid_wait"),
    ("wait nan", "GET", "/v1/jobs/job_abc", {"wait": "nan"}, 400, "invalid_wait"),
    ("wait inf", "GET", "/v1/jobs/job_abc", {"wait": "inf"}, 400, "invalid_wait"),
    ("wait 1e400", "GET", "/v1/jobs/job_abc", {"wait": "1e400"}, 400, "invalid_wait"),
    ("wait empty", "GET", "/v1/jobs/job_abc", {"wait": ""}, 400, "invalid_wait"),
    ("wait words", "GET", "/v1/jobs/job_abc", {"wait": "soon"}, 400, "invalid_wait"),
    ("wait underscore", "GET", "/v1/jobs/job_abc", {"wait": "1_0"}, 400, "invalid_wait"),
    ("wait other digits", "GET", "/v1/jobs/job_abc", {"wait": "\u0661"}, 400, "invalid_wait"),
    ("wait signed", "GET", "/v1/jobs/job_abc", {"wait": "+1"}, 400, "invalid_wait"),
    ("limit zero", "GET", "/v1/jobs", {"limit": "0"}, 400, "invalid_limit"),
    ("limit negative", "GET", "/v1/jobs", {"limit": "-5"}, 400, "invalid_limit"),
    ("limit huge", "GET", "/v1/jobs", {"limit": "9" * 40}, 400, "invalid_limit"),
    ("limit float", "GET", "/v1/jobs", {"limit": "1.5"}, 400, "invalid_limit"),
    ("limit words", "GET", "/v1/jobs", {"limit": "ten"}, 400, "invalid_limit"),
    ("limit underscore", "GET", "/v1/jobs", {"limit": "1_0"}, 400, "invalid_limit"),
    ("limit fullwidth", "GET", "/v1/jobs", {"limit": "\uff15"}, 400, "invalid_limit"),
    ("limit spaced", "GET", "/v1/jobs", {"limit": " 5"}, 400, "invalid_limit"),
    ("status unknown", "GET", "/v1/jobs", {"status": "done"}, 400, "invalid_status"),
    ("status nul", "GET", "/v1/jobs", {"status": "queued\x00"}, 400, "invalid_parameter"),
    ("analysis nul", "GET", "/v1/jobs", {"analysis": "senti\x00ment"}, 400, "invalid_parameter"),
    ("analysis unknown", "GET", "/v1/jobs", {"analysis": "nope"}, 422, "unknown_analysis"),
    ("analysis misspelt", "GET", "/v1/jobs", {"analysis": "sentimnet"}, 422, "unknown_analysis"),
    ("analysis empty", "GET", "/v1/jobs", {"analysis": ""}, 422, "unknown_analysis"),
    ("list param misspelt", "GET", "/v1/jobs", {"stauts": "failed"}, 400, "invalid_parameter"),
    ("list param twice", "GET", "/v1/jobs", {"status": ["queued", "failed"]}, 400, "invalid_parameter"),
    ("wait misspelt", "GET", "/v1/jobs/job_abc", {"wiat": "10"}, 400, "invalid_parameter"),
    ("wait twice", "GET", "/v1/jobs/job_abc", {"wait": ["1", "30"]}, 400, "invalid_parameter"),
    ("cursor garbage", "GET", "/v1/jobs", {"cursor": "%%%"}, 400, "invalid_cursor"),
    ("cursor nul", "GET", "/v1/jobs", {"cursor": "abc\x00"}, 400, "invalid_cursor"),
    ("cursor wrong shape", "GET", "/v1/jobs", {"cursor": base64.urlsafe_b64encode(b'{"a":1}').decode()}, 400,
     "invalid_cursor"),
    ("cursor id with nul", "GET", "/v1/jobs",
     {"cursor": base64.urlsafe_b64encode(json.dumps(["2026-01-01T00:00:00+00:00", "job_\u0000"]).encode()).decode()},
     400, "invalid_cursor"),
    ("cursor naive time", "GET", "/v1/jobs",
     {"cursor": base64.urlsafe_b64encode(json.dumps(["2026-01-01T00:00:00", "job_abc"]).encode()).decode()},
     400, "invalid_cursor"),
    ("cancel nul", "POST", "/v1/jobs/job_%00/cancel", None, 404, "job_not_found"),
    ("cancel long", "POST", "/v1/jobs/job_" + "b" * 5000 + "/cancel", None, 404, "job_not_found"),
    ("cancel unknown", "POST", "/v1/jobs/job_unknown/cancel", None, 404, "job_not_found"),
    ("delete nul", "DELETE", "/v1/jobs/job_%00", None, 404, "job_not_found"),
    ("delete unknown", "DELETE", "/v1/jobs/job_unknown", None, 404, "job_not_found"),
    ("webhooks nul", "GET", "/v1/jobs/job_%00/webhooks", None, 404, "job_not_found"),
    ("webhooks unknown", "GET", "/v1/jobs/job_unknown/webhooks", None, 404, "job_not_found"),
    ("redeliver nul", "POST", "/v1/webhooks/msg_%00/redeliver", None, 404, "webhook_event_not_found"),
    ("redeliver long", "POST", "/v1/webhooks/msg_" + "c" * 5000 + "/redeliver", None, 404, "webhook_event_not_found"),
    ("redeliver unknown", "POST", "/v1/webhooks/msg_unknown/redeliver", None, 404, "webhook_event_not_found"),
    ("redeliver other prefix", "POST", "/v1/webhooks/wh_nope/redeliver", None, 404, "webhook_event_not_found"),
    ("ellipsis id", "GET", "/v1/jobs/job_\u2026", None, 404, "job_not_found"),
    ("put jobs", "PUT", "/v1/jobs", None, 405, "method_not_allowed"),
    ("patch job", "PATCH", "/v1/jobs/job_abc", None, 405, "method_not_allowed"),
    ("delete list", "DELETE", "/v1/jobs", None, 405, "method_not_allowed"),
    ("post health", "POST", "/health", None, 405, "method_not_allowed"),
    ("get cancel", "GET", "/v1/jobs/job_abc/cancel", None, 405, "method_not_allowed"),
    ("unknown path", "GET", "/v1/horoscope", None, 404, "not_found"),
    ("unknown deep path", "GET", "/v1/jobs/job_abc/nothing/here", None, 404, "not_found"),
]  # fmt: skip

AUTH_CASES: list[tuple[str, dict[str, str], str]] = [
    ("no key", {}, "missing_api_key"),
    ("basic", {"Authorization": "Basic dXNlcjpwYXNz"}, "invalid_authorization"),
    ("empty bearer", {"Authorization": "Bearer "}, "invalid_authorization"),
    ("unknown key", {"Authorization": "Bearer assay_nope"}, "invalid_api_key"),
    ("huge key", {"Authorization": "Bearer " + "k" * 10_000}, "invalid_api_key"),
    ("key with spaces", {"Authorization": "Bearer a b c"}, "invalid_api_key"),
]


@pytest.fixture(scope="module")
def api(stack: Stack) -> str:
    return stack.api(ASSAY_QUEUE_PREFIX=f"bad{secrets.token_hex(3)}")[1]


@pytest.fixture(scope="module")
def user(api: str, new_key_module) -> Client:
    return Client(api, new_key_module())


@pytest.fixture(scope="module")
def new_key_module(db: Engine):
    from store.keys import create_key

    def issue() -> str:
        with db.begin() as conn:
            return create_key(conn, f"bad-{secrets.token_hex(4)}").secret

    return issue


def jobs_of_everyone(db: Engine) -> int:
    with db.connect() as conn:
        return conn.execute(select(func.count()).select_from(jobs)).scalar_one()


def assert_4xx(response: requests.Response, status: int, code: str | None) -> None:
    assert response.status_code == status, (response.status_code, response.text[:300])
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if code:
        assert body["error"]["code"] == code, body
    if status == 405:
        assert response.headers.get("Allow"), "405 names the methods allowed"


@pytest.mark.parametrize(("name", "kwargs", "status", "code"), JSON_CASES, ids=[c[0] for c in JSON_CASES])
def test_submissions(user: Client, db: Engine, name, kwargs, status, code) -> None:
    before = jobs_of_everyone(db)
    assert_4xx(user.post("/v1/jobs", **kwargs), status, code)
    assert jobs_of_everyone(db) == before


@pytest.mark.parametrize(
    ("name", "form", "files", "status", "code"), MULTIPART_CASES, ids=[c[0] for c in MULTIPART_CASES]
)
def test_uploads(user: Client, db: Engine, name, form, files, status, code) -> None:
    before = jobs_of_everyone(db)
    assert_4xx(user.post("/v1/jobs", data=form, files=files or {"other": ("x", b"")}), status, code)
    assert jobs_of_everyone(db) == before


def test_a_file_part_without_a_filename_is_named_as_such(user: Client, db: Engine) -> None:
    """curl -F 'file=<calls.csv' sends the part with no filename, which the form parser files as a text field:
    "send it in a form field named 'file'" was the answer, to a request that had done just that."""
    before = jobs_of_everyone(db)
    response = user.post("/v1/jobs", data={"analysis": "transcription", "file": "RIFF"}, files={"x": ("x", b"")})
    assert_4xx(response, 422, "missing_file")
    assert "no filename" in response.json()["error"]["message"], response.text
    assert jobs_of_everyone(db) == before


_FIELD = b'--zz\r\nContent-Disposition: form-data; name="analysis"\r\n\r\ntranscription\r\n'
_FILE = b'--zz\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n' + WAV + b"\r\n"


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("multipart/form-data; boundary=zz", _FIELD + _FILE),  # no closing boundary
        ("multipart/form-data; boundary=zz", (_FIELD + _FILE)[: len(_FIELD) + 100]),  # cut inside the file
        ("multipart/form-data", _FIELD + _FILE + b"--zz--\r\n"),  # no boundary parameter
    ],
    ids=["unclosed", "cut", "no-boundary"],
)
def test_a_multipart_body_that_does_not_parse_is_a_400(
    user: Client, db: Engine, content_type: str, body: bytes
) -> None:
    """werkzeug's parser drops a form it cannot parse silently: the answer was 422 "form field 'analysis' is
    required" for a form that sent it, sending the user after the wrong problem."""
    before = jobs_of_everyone(db)
    response = user.post("/v1/jobs", data=body, headers={"Content-Type": content_type})
    assert_4xx(response, 400, "bad_request")
    assert "multipart" in response.json()["error"]["message"], response.text
    assert jobs_of_everyone(db) == before
    whole = user.post("/v1/jobs", data=_FIELD + _FILE + b"--zz--\r\n", headers={"Content-Type": content_type})
    assert whole.status_code == 202 or "boundary" not in content_type, whole.text


@pytest.mark.parametrize(("name", "kwargs", "status", "code"), BATCH_CASES, ids=[c[0] for c in BATCH_CASES])
def test_batches(user: Client, db: Engine, name, kwargs, status, code) -> None:
    before = jobs_of_everyone(db)
    assert_4xx(user.post("/v1/jobs/batch", **kwargs), status, code)
    assert jobs_of_everyone(db) == before


@pytest.mark.parametrize(
    ("name", "method", "path", "params", "status", "code"), READ_CASES, ids=[c[0] for c in READ_CASES]
)
def test_reads_and_actions(user: Client, name, method, path, params, status, code) -> None:
    response = user.request(method, path, params=params)
    assert_4xx(response, status, code)
    if code in ("job_not_found", "webhook_event_not_found"):  # not werkzeug's "requested URL was not found"
        noun = "job" if code == "job_not_found" else "webhook event"
        assert response.json()["error"]["message"].startswith(f"no {noun} '"), response.text


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/jobs/"), ("POST", "/v1/jobs/"), ("GET", "/v1/jobs/job_abc/"), ("GET", "/v1/stats/")],
)
def test_a_trailing_slash_is_named(user: Client, method: str, path: str) -> None:
    """`/v1/jobs/` is not `/v1/jobs`: the 404 says so, not werkzeug's "check your spelling"."""
    response = user.request(method, path)
    assert_4xx(response, 404, "not_found")
    assert "trailing slash" in response.json()["error"]["message"], response.text
    assert "trailing slash" not in user.get("/v1/horoscope/").json()["error"]["message"]


@pytest.mark.parametrize(("method", "path"), [("GET", "/v1//jobs"), ("POST", "/v1//jobs"), ("GET", "/v1//analyses")])
def test_a_doubled_slash_is_a_json_404(api: str, db: Engine, new_key_module, method: str, path: str) -> None:
    """werkzeug merged the slashes with a 308 redirect that bypassed the error handlers: an HTML page."""
    body = json.dumps(OK).encode()
    before = jobs_of_everyone(db)
    status, answer = _send_raw(
        api,
        f"{method} {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {new_key_module()}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body,
    )
    assert status == 404 and answer is not None and answer["error"]["code"] == "not_found", (status, answer)
    assert "empty segments" in answer["error"]["message"], answer
    assert jobs_of_everyone(db) == before


@pytest.mark.parametrize(("name", "headers", "code"), AUTH_CASES, ids=[c[0] for c in AUTH_CASES])
def test_credentials(api: str, db: Engine, name, headers, code) -> None:
    before = jobs_of_everyone(db)
    for method, path in (("POST", "/v1/jobs"), ("GET", "/v1/jobs"), ("GET", "/v1/webhooks/secret")):
        response = requests.request(method, api + path, json=OK, headers=headers, timeout=30)
        assert_4xx(response, 401, code)
    assert jobs_of_everyone(db) == before


def test_the_sweep_is_at_least_a_hundred_cases() -> None:
    assert len(JSON_CASES) + len(MULTIPART_CASES) + len(BATCH_CASES) + len(READ_CASES) + len(AUTH_CASES) >= 100


@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/jobs/batch"])
def test_a_submission_takes_no_query_parameters(user: Client, path: str) -> None:
    """`POST /v1/jobs?wait=10` looked accepted and answered at once: a submission never waits."""
    body = job() if path == "/v1/jobs" else {"jobs": [job()]}
    response = user.post(path, params={"wait": "10"}, json=body)
    assert_4xx(response, 400, "invalid_parameter")
    assert response.json()["error"]["details"] == {"unknown": ["wait"], "known": []}
    if path == "/v1/jobs":  # nor a multipart upload, whose fields are form fields
        form = user.post(path, params={"analysis": "transcribe"}, files={"file": ("a.wav", b"RIFF")})
        assert_4xx(form, 400, "invalid_parameter")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/v1/jobs/{job}/cancel"),
        ("delete", "/v1/jobs/{job}"),
        ("get", "/v1/jobs/{job}/webhooks"),
        ("get", "/v1/stats"),
        ("get", "/v1/webhooks/secret"),
        ("post", "/v1/webhooks/msg_0000000000000000000000/redeliver"),
        ("get", "/v1/events"),
    ],
)
def test_routes_that_take_no_query_parameters_refuse_them(user: Client, method: str, path: str) -> None:
    """`DELETE /v1/jobs/{id}?dry_run=1` erased the job; `GET /v1/events?last_event_id=…` streamed from now."""
    job = user.submit("left alone by a refused request")
    response = getattr(user, method)(path.format(job=job["id"]), params={"dry_run": "1"})
    assert_4xx(response, 400, "invalid_parameter")
    assert user.get(f"/v1/jobs/{job['id']}").json()["status"] == "queued", "the refused request did nothing"


def test_options_answers_the_methods_with_no_body(user: Client) -> None:
    """It was Flask's automatic 200 with an empty text/html body."""
    response = user.request("OPTIONS", "/v1/jobs")
    assert response.status_code == 204 and response.content == b"", response
    assert "text/html" not in response.headers.get("Content-Type", "")
    assert {"GET", "POST"} <= {m.strip() for m in response.headers["Allow"].split(",")}


def test_a_rotation_takes_no_query_parameters(user: Client) -> None:
    """`POST /v1/webhooks/secret/rotate?grace_seconds=0` (after a leak) rotated with the default 24 h grace:
    the leaked secret went on signing for a day, and the answer looked like success."""
    before = user.get("/v1/webhooks/secret").json()["secret"]
    for params in ({"grace_seconds": "0"}, {"grace": "0"}):
        response = user.post("/v1/webhooks/secret/rotate", params=params)
        assert_4xx(response, 400, "invalid_parameter")
        assert response.json()["error"]["details"] == {"unknown": sorted(params), "known": []}
        with_body = user.post("/v1/webhooks/secret/rotate", params=params, json={"grace_seconds": 0})
        assert_4xx(with_body, 400, "invalid_parameter")
    assert user.get("/v1/webhooks/secret").json()["secret"] == before  # nothing was rotated


def test_a_valid_submission_still_goes_through(user: Client) -> None:
    assert user.post("/v1/jobs", json=job(metadata={"n": 10**100, "s": "ünïcødé ✓"})).status_code == 202


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"analysis": "cdr_fraud", "input": {"cdr_base64": "YSxi"}, "options": {"cache": False}},
            "a call-record job (input.cdr_base64) is not valid: options: Extra inputs are not permitted",
        ),
        (
            {"analysis": "transcription", "input": {"audio_base64": "AAAA", "lang": "en"}},
            "an audio job (input.audio_base64) is not valid: input.lang: Extra inputs are not permitted",
        ),
        ({"analysis": "sentiment", "input": {"txt": "hi"}}, "the job is not valid: input.text: Field required"),
    ],
)
def test_the_message_names_the_first_problem(user: Client, body: dict[str, Any], message: str) -> None:
    """A call-record job whose only fault was an `options` field was told it "needs input.cdr_base64"."""
    answer = user.post("/v1/jobs", json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["message"].startswith(message), answer.json()


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        (
            "/v1/jobs/batch",
            {"jobs": [{"analysis": "sentiment", "input": {"text": "hi"}}], "webhook": {"url": 5}},
            "webhook is not valid: url: ",
        ),
        ("/v1/webhooks/secret/rotate", {"grace_seconds": -1}, "the rotation is not valid: grace_seconds: "),
        ("/v1/webhooks/secret/rotate", {"grace": 5}, "the rotation is not valid: grace: Extra inputs"),
    ],
)
def test_the_batch_webhook_and_the_rotation_name_their_first_problem(
    user: Client, path: str, body: dict[str, Any], message: str
) -> None:
    """Both said only "... is not valid", with the reason left to `details`."""
    answer = user.post(path, json=body)
    assert answer.status_code == 422 and answer.json()["error"]["code"] == "validation_error", answer.text
    assert answer.json()["error"]["message"].startswith(message), answer.json()


def _send_raw(url: str, request: bytes, *, half_close: bool = False) -> tuple[int, dict[str, Any] | None]:
    """One HTTP/1.1 request written byte for byte (framing no client library would send): (status, JSON body).
    `half_close`: the client then closes its sending side, as one that gave up mid-upload."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(request)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body) if body.strip().startswith(b"{") else None


def _chunked(key: str, body: bytes) -> bytes:
    return (
        b"POST /v1/jobs HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer " + key.encode() + b"\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + body
    )


ONE_JOB = json.dumps(OK).encode()
BROKEN_CHUNKS = [
    ("size not hex", b"zz\r\n" + ONE_JOB + b"\r\n0\r\n\r\n"),
    ("size negative", b"-5\r\n" + ONE_JOB + b"\r\n0\r\n\r\n"),
    ("size with 0x", b"0x5\r\n" + ONE_JOB + b"\r\n0\r\n\r\n"),
    ("no terminator", f"{len(ONE_JOB):x}".encode() + b"\r\n" + ONE_JOB + b"XX0\r\n\r\n"),
    ("bad trailer", f"{len(ONE_JOB):x}".encode() + b"\r\n" + ONE_JOB + b"\r\n0\r\nno colon\r\n\r\n"),
]


@pytest.mark.parametrize("body", [b for _, b in BROKEN_CHUNKS], ids=[n for n, _ in BROKEN_CHUNKS])
def test_broken_chunked_framing_is_a_400(api: str, db: Engine, new_key_module, body: bytes) -> None:
    """gunicorn raises while the app reads such a body: the client's error, in the one JSON shape."""
    before = jobs_of_everyone(db)
    status, answer = _send_raw(api, _chunked(new_key_module(), body))
    assert status == 400 and answer is not None and answer["error"]["code"] == "bad_request", (status, answer)
    assert jobs_of_everyone(db) == before


def test_a_chunked_body_past_the_size_limit_is_refused_not_cut(stack: Stack, db: Engine, new_key_module) -> None:
    """A chunked body declares no length, and werkzeug's reader stops at the limit without an error."""
    _, url = stack.api(ASSAY_MAX_REQUEST_BYTES="4096", ASSAY_QUEUE_PREFIX=f"bad{secrets.token_hex(3)}")
    key = new_key_module()
    fits = json.dumps(job(input={"text": "x" * 3000})).encode()
    over = json.dumps(job(input={"text": "x" * 3000})).encode() + b" " * 2000  # valid JSON either way
    status, answer = _send_raw(url, _chunked(key, f"{len(fits):x}".encode() + b"\r\n" + fits + b"\r\n0\r\n\r\n"))
    assert status == 202, answer
    before = jobs_of_everyone(db)
    status, answer = _send_raw(url, _chunked(key, f"{len(over):x}".encode() + b"\r\n" + over + b"\r\n0\r\n\r\n"))
    assert status == 413 and answer is not None and answer["error"]["code"] == "request_too_large", (status, answer)
    assert jobs_of_everyone(db) == before


CUT_CSV = b"caller,callee,start_time,duration\n" + b"".join(
    b"+1555000%04d,+1555111%04d,2024-01-01T00:00:%02d,%d\n" % (i, i, i % 60, i) for i in range(200)
)
CUT_FORM = (
    b'--xx\r\nContent-Disposition: form-data; name="analysis"\r\n\r\ncdr_fraud\r\n--xx\r\n'
    b'Content-Disposition: form-data; name="file"; filename="a.csv"\r\nContent-Type: text/csv\r\n\r\n'
    + CUT_CSV
    + b"\r\n--xx--\r\n"
)
CUT_SHORT = [
    # (name, request target, content type, body sent; its Content-Length says 5000 bytes more)
    ("json", "/v1/jobs", "application/json", json.dumps(OK).encode()),
    ("raw call records", "/v1/jobs?analysis=cdr_fraud", "text/csv", CUT_CSV),
    ("multipart call records", "/v1/jobs", "multipart/form-data; boundary=xx", CUT_FORM),
]


@pytest.mark.parametrize(("target", "content_type", "body"), [c[1:] for c in CUT_SHORT], ids=[c[0] for c in CUT_SHORT])
def test_a_body_cut_short_of_its_content_length_is_refused(
    api: str, db: Engine, settings, new_key_module, target: str, content_type: str, body: bytes
) -> None:
    """A client that disconnects mid-upload: gunicorn's reader ends the body at the end of the stream as if it
    were whole, and the truncated call-record file (or JSON that still parsed) became a job."""
    before, spooled = jobs_of_everyone(db), set(settings.cdr_upload_dir.glob("*"))
    request = (
        f"POST {target} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {new_key_module()}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body) + 5000}\r\n\r\n"
    ).encode() + body
    status, answer = _send_raw(api, request, half_close=True)
    assert status == 400 and answer is not None and answer["error"]["code"] == "bad_request", (status, answer)
    assert answer["error"]["details"] == {"declared": len(body) + 5000, "received": len(body)}, answer
    assert jobs_of_everyone(db) == before
    assert set(settings.cdr_upload_dir.glob("*")) <= spooled  # nothing spooled is left behind


def test_a_body_that_stalls_is_answered_408_and_holds_no_connection(
    stack: Stack, db: Engine, settings, new_key_module
) -> None:
    """Headers, part of the body, then nothing (a slowloris): the greenlet and one of `worker_connections`
    were held for good, since gevent's sockets had no timeout (gunicorn's `timeout` is the worker's heartbeat)."""
    proc, url = stack.api(ASSAY_API_READ_TIMEOUT_SECONDS="2", ASSAY_QUEUE_PREFIX=f"bad{secrets.token_hex(3)}")
    key = new_key_module()
    before, spooled = jobs_of_everyone(db), set(settings.cdr_upload_dir.glob("*"))
    parts = urlsplit(url)
    for target, content_type, body in [c[1:] for c in CUT_SHORT]:
        head = (
            f"POST {target} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body) + 5000}\r\n\r\n"
        ).encode()
        with socket.create_connection((parts.hostname, parts.port), timeout=20) as sock:
            started = time.monotonic()
            sock.sendall(head + body)  # and then nothing, the connection left open
            received = b""
            while chunk := sock.recv(65536):  # the server answers, then closes
                received += chunk
            took = time.monotonic() - started
        status = int(received.split(b" ", 2)[1])
        answer = json.loads(received.partition(b"\r\n\r\n")[2])
        assert status == 408 and answer["error"]["code"] == "request_timeout", (target, received[:500])
        assert 5.5 < took < 15, (answer, took)  # keepalive (5 s) + 1 at least: idle keep-alives close quietly
    assert jobs_of_everyone(db) == before
    assert set(settings.cdr_upload_dir.glob("*")) <= spooled
    with socket.create_connection((parts.hostname, parts.port), timeout=20) as sock:  # an idle keep-alive
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
        while sock.recv(65536):
            pass
    assert "Traceback" not in proc.log_text()
    # A long-poll reads nothing from the socket while it waits: the timeout does not cut it short.
    user = Client(url, key)
    job_id = user.submit("fine")["id"]
    started = time.monotonic()
    assert user.get(f"/v1/jobs/{job_id}", params={"wait": 4}).status_code == 200
    assert time.monotonic() - started > 3.5


GUNICORN_REFUSALS = [
    # (name, request, status, code): refused by gunicorn before the app sees them
    ("request line too long", b"GET /v1/jobs?cursor=" + b"a" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414,
     "uri_too_long"),
    ("header too large", b"GET /v1/jobs HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n", 431,
     "headers_too_large"),
    ("too many headers", b"GET /v1/jobs HTTP/1.1\r\nHost: t\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(150))
     + b"\r\n", 431, "headers_too_large"),
    ("not HTTP", b"HELLO\r\n\r\n", 400, "bad_request"),
]  # fmt: skip


@pytest.mark.parametrize(("request_bytes", "status", "code"), [r[1:] for r in GUNICORN_REFUSALS],
                         ids=[r[0] for r in GUNICORN_REFUSALS])  # fmt: skip
def test_what_gunicorn_refuses_itself_is_in_the_one_json_shape(api: str, request_bytes: bytes, status: int, code: str):
    """Past gunicorn's limits the app never runs; gunicorn wrote those answers as an HTML page."""
    got, answer = _send_raw(api, request_bytes)
    assert got == status and answer is not None, (got, answer)
    assert answer["error"]["code"] == code and answer["error"]["message"] and "details" in answer["error"], answer


def test_refused_audio_leaves_no_traceback_in_the_api_log(stack: Stack, new_key_module) -> None:
    """The audio probe runs on gevent's thread pool, which printed the traceback of every exception its
    work raised: each 422 `invalid_audio` (a client's mistake) put ~30 lines of non-JSON on the API's
    standard error, beside the JSON log lines."""
    proc, url = stack.api(ASSAY_QUEUE_PREFIX=f"bad{secrets.token_hex(3)}")
    user = Client(url, new_key_module())
    answers = [
        user.post("/v1/jobs", data={"analysis": "transcription"}, files={"file": ("a.wav", b"not audio at all")}),
        user.post("/v1/jobs", params={"analysis": "transcription"}, **raw(b"not audio at all", "audio/wav")),
        user.post(
            "/v1/jobs",
            json={"analysis": "transcription", "input": {"audio_base64": base64.b64encode(b"not audio").decode()}},
        ),
    ]
    for response in answers:
        assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_audio", response.text
    assert user.post("/v1/jobs", data={"analysis": "transcription"}, files={"file": ("a.wav", WAV)}).status_code == 202
    log = proc.log_text()
    assert "Traceback" not in log and "InvalidAudio" not in log, log[-3000:]


def _ffconcat(target: str) -> bytes:
    return f"ffconcat version 1.0\nfile {target}\n".encode()


def test_audio_naming_other_files_never_makes_ffmpeg_open_them(user: Client, db: Engine) -> None:
    """An ffconcat script uploaded as audio made FFmpeg open the file it names, relative to the process's
    working directory: the probe read a WAV of the server's own disk and the job was accepted (202) with
    that file's length, and the worker would have transcribed the server's file for the tenant. Audio is
    the bytes sent, never something they point to (FFmpeg's nested opens are refused)."""
    from models.audio import InvalidAudio, decode_audio, probe_audio

    script = _ffconcat("tests/fixtures/audio/phishing.wav")  # a real audio file under the API's working dir
    before = jobs_of_everyone(db)
    answers = [
        user.post("/v1/jobs", data={"analysis": "transcription"}, files={"file": ("a.ffconcat", script)}),
        user.post("/v1/jobs", params={"analysis": "transcription"}, **raw(script, "audio/wav")),
        user.post(
            "/v1/jobs",
            json={"analysis": "transcription", "input": {"audio_base64": base64.b64encode(script).decode()}},
        ),
    ]
    for response in answers:
        assert_4xx(response, 422, "invalid_audio")
    assert jobs_of_everyone(db) == before
    # The worker decodes what the API stored: it must not follow the script either.
    for read in (probe_audio, decode_audio):
        with pytest.raises(InvalidAudio):
            read(script)
