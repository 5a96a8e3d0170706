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


def test_only_texts_with_something_to_read_are_texts() -> None:
    from app.validation import has_visible_characters

    for text in ("a", "é", "7", "?", "€", "🙂", "\u200bhi", "  x  ", "\u0301a", "日本"):
        assert has_visible_characters(text), repr(text)
    for text in ("", "\u200b\u200c\u200d", "\u202e\u2066", "\u0301" * 10, "\ue000\uf8ff", "\u180e" * 3, "\u3000"):
        assert not has_visible_characters(text), repr(text)
