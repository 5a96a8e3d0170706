"""Request bodies and values made safe before anything else reads them.

Python's json accepts things PostgreSQL's jsonb and psycopg2 refuse: `\\u0000` and unpaired
surrogates in strings, NaN and Infinity, nesting deep enough to exhaust the stack. Each of these
once reached the database as a 500. Here they become a 400 (not JSON we accept) or a 422 (JSON, but
not text we can store), before validation; duplicate keys are refused too, since which one would
win is a guess.
"""

from __future__ import annotations

import json
import re
from typing import Any

from werkzeug.exceptions import RequestEntityTooLarge

from app.errors import ApiError

MAX_DEPTH = 32  # deeper structures have no use in a job, and jsonb's own limit is not much higher
#: Storable text as the OpenAPI document states it: no NUL (unpaired surrogates cannot be valid JSON text).
NO_NUL_PATTERN = r"^[^\u0000]*$"
#: A job's text: storable and not blank.
TEXT_PATTERN = r"^[^\u0000]*[^\s\u0000][^\u0000]*$"


#: The only ways a JSON body carries a string PostgreSQL cannot store: a `\u0000` escape, a surrogate
#: escape (`\uD800`-`\uDFFF`), or UTF-8 bytes of a surrogate (json.loads decodes with surrogatepass).
#: A body with none of them, and no NUL byte (which UTF-16 and UTF-32 bodies always have), needs only
#: its nesting checked: on a 100-job batch, walking every string was ~4 % of the request.
_MAYBE_UNSTORABLE = re.compile(rb"\\u0000|\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]|\x00")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """The object, unless a key repeats (the dict is then shorter than its pairs: no key list and set per
    object, which were a third of parsing a 100-job batch)."""
    value = dict(pairs)
    if len(value) != len(pairs):
        keys = [key for key, _ in pairs]
        duplicate = next(key for key in keys if keys.count(key) > 1)
        raise ValueError(f"duplicate key {duplicate!r}")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"{text[:20]}… is too large a number")
    return value


def parse_json(raw: bytes | str) -> Any:
    """The parsed body, or 400 `invalid_json` with the reason; then `check_storable` on it."""
    try:
        value = json.loads(raw, object_pairs_hook=_no_duplicates, parse_constant=_no_constant, parse_float=_finite)
    except RecursionError:
        raise ApiError(400, "invalid_json", "the body is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError; so is a 5000-digit int
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {str(exc)[:200]}") from None
    if isinstance(raw, bytes) and not _MAYBE_UNSTORABLE.search(raw):
        check_depth(value)
    else:
        check_storable(value)
    return value


def _bad_text(text: str) -> str | None:
    if "\x00" in text:
        return "contains a NUL character (\\u0000)"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains an unpaired UTF-16 surrogate"
    return None


def check_storable(value: Any, where: str = "body", depth: int = 0) -> None:
    """422 unless every string (keys too) is storable text and nesting stays within MAX_DEPTH."""
    if depth > MAX_DEPTH:
        raise ApiError(422, "validation_error", f"{where} is nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, str):
        if problem := _bad_text(value):
            raise ApiError(422, "invalid_characters", f"{where} {problem}", {"loc": where})
    elif isinstance(value, dict):
        for key, item in value.items():
            check_storable(key, f"{where} key", depth + 1)
            check_storable(item, f"{where}.{key}"[:200], depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_storable(item, f"{where}[{index}]", depth + 1)


def check_depth(value: Any) -> None:
    """`check_storable`'s nesting limit alone, level by level over the containers (the same bodies pass)."""
    containers = [value] if isinstance(value, (dict, list)) else []
    depth = 0
    while containers:
        if depth >= MAX_DEPTH and any(containers):  # their keys and items would sit deeper than MAX_DEPTH
            raise ApiError(422, "validation_error", f"body is nested more than {MAX_DEPTH} levels deep")
        containers = [
            item
            for container in containers
            for item in (container.values() if isinstance(container, dict) else container)
            if isinstance(item, (dict, list))
        ]
        depth += 1


def check_text_param(name: str, value: str | None) -> str | None:
    """A query, form or path value, refused (400) if it could not be stored or compared in SQL."""
    if value is not None and (problem := _bad_text(value)):
        raise ApiError(400, "invalid_parameter", f"{name} {problem}", {"parameter": name})
    return value


def check_query(known: frozenset[str]) -> None:
    """The query string of a route that reads these parameters: each one of them, given once (400 otherwise).

    A misspelt name (`?stauts=failed`, `?wiat=10`) would otherwise be dropped in silence, and the answer
    would look like one to the request meant; of a repeated one only the first would count.
    """
    from flask import request

    args = request.args
    unknown = sorted(set(args) - known)
    if unknown:
        raise ApiError(
            400,
            "invalid_parameter",
            f"unknown query parameter{'s' if len(unknown) > 1 else ''} {', '.join(repr(n[:64]) for n in unknown)}",
            {"unknown": unknown, "known": sorted(known)},
        )
    twice = sorted(name for name in args if len(args.getlist(name)) > 1)
    if twice:
        raise ApiError(
            400, "invalid_parameter", f"query parameter {twice[0]!r} given more than once", {"parameter": twice[0]}
        )


def json_body() -> Any:
    """The request's JSON body, made safe; 415 unless it is declared application/json."""
    from flask import request

    if request.mimetype != "application/json":
        raise ApiError(
            415,
            "unsupported_media_type",
            "send the body as application/json (a file to /v1/jobs: multipart/form-data, or the file itself as "
            "text/csv, application/gzip, audio/… with ?analysis=…)",
        )
    coding = request.headers.get("Content-Encoding", "").strip().lower()
    if coding not in ("", "identity"):
        # Decoding would put a bomb's inflated size past the body limit's check; left as is, the bytes fail
        # as invalid JSON, which points the user at the body rather than at the header.
        raise ApiError(
            415,
            "unsupported_media_type",
            f"Content-Encoding {coding[:40]!r} is not accepted on JSON bodies: send the JSON uncompressed",
            {"content_encoding": coding[:40]},
            {"Accept-Encoding": "identity"},
        )
    data = request.get_data(cache=False)
    limit = request.max_content_length
    at_limit = request.content_length is None and limit is not None and len(data) >= limit
    if at_limit and request.environ["wsgi.input"].read(1):
        # A chunked body has no length to check up front, and werkzeug's reader stops at the limit without
        # saying so: the rest would be cut off silently (a text truncated, or JSON that no longer parses).
        raise RequestEntityTooLarge()
    return parse_json(data)
