"""Pure pieces of the rate limits and the event stream: which figures apply, and how events are framed."""

from __future__ import annotations

import json
from dataclasses import replace

from app.events_api import _frame, _older
from app.ratelimits import Limits
from config.settings import load_settings
from store.limits import OVERRIDABLE


def test_limits_come_from_settings_and_a_tenant_override_replaces_only_its_field() -> None:
    settings = load_settings(rate_requests=7, rate_requests_window_seconds=3, tenant_max_queued_jobs=11)
    limits = Limits.from_settings(settings)
    assert (limits.rate_requests, limits.rate_requests_window_seconds, limits.tenant_max_queued_jobs) == (7, 3, 11)
    assert limits.requests_item.amount == 7 and limits.requests_item.get_expiry() == 3
    assert limits.jobs_item.get_expiry() == 60
    raised = replace(limits, tenant_max_queued_jobs=500)
    assert raised.tenant_max_queued_jobs == 500 and raised.rate_requests == 7


def test_every_overridable_name_is_a_setting() -> None:
    settings = load_settings()
    assert all(hasattr(settings, name) for name in OVERRIDABLE)


def test_event_ids_compare_as_redis_stream_ids_not_as_text() -> None:
    assert _older("999-5", "1000-0")  # as text "999-5" > "1000-0"
    assert _older("1000-2", "1000-10")
    assert not _older("1000-0", "1000-0")


def test_a_frame_is_one_sse_event() -> None:
    frame = _frame("17-0", {"job_id": "job_x", "status": "queued"})
    lines = frame.split("\n")
    assert lines[:2] == ["id: 17-0", "event: job"] and frame.endswith("\n\n")
    assert json.loads(lines[2].removeprefix("data: ")) == {"job_id": "job_x", "status": "queued"}
