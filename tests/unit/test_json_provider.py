"""JSON responses written by orjson say what the standard library said, and never fail where it did not."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from flask import Flask

from app.json_provider import OrjsonProvider


def _app() -> Flask:
    app = Flask("t")
    app.json = OrjsonProvider(app)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    return app


def test_a_job_document_reads_back_as_the_same_value_in_insertion_order() -> None:
    doc = {"id": "job_x", "status": "queued", "result": None, "metadata": {"b": 1, "a": [1.5, "é", True]}, "n": 3}
    with _app().app_context() as ctx:
        body = ctx.app.json.response({"data": [doc]}).get_data()
    assert json.loads(body) == {"data": [doc]}
    assert body.endswith(b"\n") and list(json.loads(body)["data"][0]) == list(doc)


def test_what_orjson_refuses_is_written_by_the_standard_library() -> None:
    huge = {"metadata": {"n": 10**30, 1: "int key"}, "at": datetime(2026, 1, 2, tzinfo=UTC)}
    with _app().app_context() as ctx:
        body = json.loads(ctx.app.json.response(huge).get_data())
    assert body == {"metadata": {"n": 10**30, "1": "int key"}, "at": "Fri, 02 Jan 2026 00:00:00 GMT"}


def test_datetimes_keep_flasks_http_date_form() -> None:
    with _app().app_context() as ctx:
        assert ctx.app.json.dumps({"at": datetime(2026, 1, 2, tzinfo=UTC)}) == '{"at":"Fri, 02 Jan 2026 00:00:00 GMT"}'
