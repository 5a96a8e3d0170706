from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.cursors import decode_cursor, encode_cursor
from app.errors import ApiError
from app.validation import EntryError, canonical_hash, validate_job
from config.catalog import load_catalog
from config.settings import load_settings

SETTINGS = load_settings(max_text_chars=50, max_metadata_bytes=40)
CATALOG = load_catalog()


def test_cursor_round_trip() -> None:
    row = {"created_at": datetime(2026, 11, 22, 12, 0, 0, 123456, tzinfo=UTC), "id": "job_abc"}
    assert decode_cursor(encode_cursor(row)) == (row["created_at"], "job_abc")  # type: ignore[arg-type]


@pytest.mark.parametrize("cursor", ["", "%%%", "WyJ4Il0", "WzEsMl0", "eyJhIjoxfQ"])
def test_bad_cursors_are_400(cursor: str) -> None:
    with pytest.raises(ApiError) as caught:
        decode_cursor(cursor)
    assert caught.value.status == 400 and caught.value.code == "invalid_cursor"


def test_validate_job_builds_a_spec_with_a_stable_hash() -> None:
    spec = validate_job(
        {"analysis": "sentiment", "input": {"text": "ok"}, "metadata": {"b": 1, "a": 2}}, SETTINGS, CATALOG, "k"
    )
    same = validate_job(
        {"metadata": {"a": 2, "b": 1}, "input": {"text": "ok"}, "analysis": "sentiment"}, SETTINGS, CATALOG, "k"
    )
    assert spec.request_hash == same.request_hash
    assert spec.request_hash != canonical_hash({"other": 1})
    assert validate_job({"analysis": "sentiment", "input": {"text": "ok"}}, SETTINGS, CATALOG).request_hash is None


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({"analysis": "sentiment", "input": {"text": "x" * 51}}, 413, "input_too_large"),
        ({"analysis": "sentiment", "input": {"text": "ok"}, "metadata": {"k": "v" * 50}}, 413, "metadata_too_large"),
        ({"analysis": "nope", "input": {"text": "ok"}}, 422, "unknown_analysis"),
        ({"analysis": "sentiment", "input": {"text": "\t"}}, 422, "empty_text"),
        ("a string", 422, "validation_error"),
    ],
)
def test_validate_job_errors(payload: object, status: int, code: str) -> None:
    with pytest.raises(EntryError) as caught:
        validate_job(payload, SETTINGS, CATALOG)
    assert (caught.value.status, caught.value.code) == (status, code)


def test_metadata_is_measured_in_the_bytes_of_its_utf8_json() -> None:
    """It was measured with json.dumps' default \\u escapes: each CJK character counted 6 bytes (3 in
    UTF-8), each emoji 12 (4), so a 12 KB Japanese note was "24011 bytes as JSON" and refused."""

    def job(metadata: dict) -> dict:
        return {"analysis": "sentiment", "input": {"text": "ok"}, "metadata": metadata}

    assert validate_job(job({"k": "日" * 10}), SETTINGS, CATALOG)  # {"k":"日…"}: 8 + 30 = 38 bytes in UTF-8
    with pytest.raises(EntryError) as caught:
        validate_job(job({"k": "日" * 11}), SETTINGS, CATALOG)
    assert caught.value.code == "metadata_too_large"
    assert caught.value.details == {"limit": 40, "actual": 41}


def test_only_texts_with_something_to_read_are_texts() -> None:
    from app.validation import has_visible_characters

    for text in ("a", "é", "7", "?", "€", "🙂", "\u200bhi", "  x  ", "\u0301a", "日本"):
        assert has_visible_characters(text), repr(text)
    for text in ("", "\u200b\u200c\u200d", "\u202e\u2066", "\u0301" * 10, "\ue000\uf8ff", "\u180e" * 3, "\u3000"):
        assert not has_visible_characters(text), repr(text)


@pytest.mark.parametrize(
    "payload",
    [
        {"analysis": "sentiment", "input": {"text": "ok"}},
        {"analysis": "sentiment", "input": {"text": "ok"}, "metadata": {"b": [1, {"c": None}], "a": "x"}},
        {"analysis": "toxicity", "input": {"text": "  spaced \n text  "}, "metadata": {}},
        {"analysis": "sentiment", "input": {"text": "x" * 51}},
        {"analysis": "sentiment", "input": {"text": "\u200b"}},
        {"analysis": "sentiment", "input": {"text": "ok"}, "metadata": {"k": "v" * 50}},
        # Not the plain shape: JobCreate decides, and the fast path must not take them.
        {"analysis": "sentiment", "input": {"text": 5}},
        {"analysis": "sentiment", "input": {"text": "ok", "extra": 1}},
        {"analysis": "sentiment", "input": {}},
        {"analysis": "sentiment", "input": "ok"},
        {"analysis": "sentiment"},
        {"analysis": "sentiment", "input": {"text": "ok"}, "metadata": None},
        {"analysis": "sentiment", "input": {"text": "ok"}, "metadata": ["a"]},
        {"analysis": "sentiment", "input": {"text": "ok"}, "unknown": 1},
        {"analysis": "sentiment", "input": {"text": "ok"}, "options": {"cache": False}},
        {"analysis": "sentiment", "input": {"text": "ok"}, "webhook": None},
    ],
)
@pytest.mark.parametrize("key", [None, "k"])
def test_plain_text_jobs_skip_pydantic_with_the_same_outcome(
    payload: dict, key: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fast path for `{"analysis", "input": {"text"}, "metadata"?}` gives what JobCreate gives:
    the same spec (request hash included) or the same error."""
    from app import validation

    def outcome() -> object:
        try:
            return validate_job(payload, SETTINGS, CATALOG, key)
        except EntryError as exc:
            return (exc.status, exc.code, exc.message, exc.details)

    fast = outcome()
    monkeypatch.setattr(validation, "_plain_text_job", lambda _: None)
    assert outcome() == fast


def test_timestamps_are_written_in_their_own_zone_even_when_cached() -> None:
    """iso_timestamp is cached; an equal instant in another zone is an equal datetime, written otherwise."""
    from datetime import timedelta, timezone

    from contract.documents import iso_timestamp

    utc = datetime(2026, 12, 7, 12, 0, 0, 250000, tzinfo=UTC)
    assert iso_timestamp(utc) == "2026-12-07T12:00:00.250000Z"
    assert iso_timestamp(utc.astimezone(timezone(timedelta(hours=1)))) == "2026-12-07T13:00:00.250000+01:00"
    assert iso_timestamp(utc) == "2026-12-07T12:00:00.250000Z"
    assert iso_timestamp(None) is None


def test_the_last_event_id_pattern_takes_exactly_the_ids_redis_can_read() -> None:
    """The OpenAPI document publishes this pattern; the server used a looser one plus a bound, so 20-digit
    parts past 2**64 - 1 were schema-valid and refused."""
    import random
    import re

    from app.events_api import EVENT_ID_PATTERN, _at_most

    limit = 2**64 - 1
    part = re.compile(_at_most(limit))
    edges = [0, 9, 10, 10**19 - 1, 10**19, limit - 1, limit, limit + 1, 10**20 - 1]
    numbers = edges + list(range(limit - 2000, limit + 2000)) + [random.randrange(10**20) for _ in range(20_000)]
    assert [n for n in numbers if bool(part.fullmatch(str(n))) != (n <= limit)] == []
    whole = re.compile(EVENT_ID_PATTERN)
    assert whole.fullmatch(f"{limit}-0") and whole.fullmatch("1733600000000-12")
    assert not whole.fullmatch(f"{limit + 1}-0") and not whole.fullmatch("1-") and not whole.fullmatch("-1")
