"""parse_json's byte scan: a body it clears is one the full walk over every string would clear too."""

from __future__ import annotations

import json
import random

import pytest

from app.errors import ApiError
from app.request_json import MAX_DEPTH, check_storable, parse_json


def _verdict(check, *args) -> str | None:  # type: ignore[no-untyped-def]
    try:
        check(*args)
    except ApiError as exc:
        return exc.code
    return None


def _full_walk(raw: bytes) -> str | None:
    return _verdict(check_storable, json.loads(raw))


def _nested(depth: int, leaf: object) -> object:
    value = leaf
    for level in range(depth):
        value = {"k": value} if level % 2 else [value]
    return value


BODIES = [
    b'{"jobs": [{"analysis": "sentiment", "input": {"text": "caf\\u00e9 \xc3\xa9 \\ud83d\\ude00"}}]}',
    b'{"text": "a\\u0000b"}',
    b'{"te\\u0000xt": "ab"}',
    b'{"text": "\\ud800"}',
    b'{"text": "\\uDFFF tail"}',
    b'{"text": "\xed\xa0\x80"}',  # a surrogate's UTF-8 bytes: json.loads decodes them with surrogatepass
    b'{"text": "a backslash then u0000: \\\\u0000"}',  # no NUL: the scan is cautious, the walk decides
    b"[]",
    b"{}",
    b'"plain"',
    json.dumps({"m": {"a": [{"b": ["\x00"]}]}}).encode(),
] + [json.dumps(_nested(d, leaf)).encode() for d in range(MAX_DEPTH - 2, MAX_DEPTH + 3) for leaf in ("x", [], {}, 1)]


@pytest.mark.parametrize("raw", BODIES)
def test_the_scan_and_the_full_walk_agree(raw: bytes) -> None:
    assert _verdict(parse_json, raw) == _full_walk(raw)


def test_agreement_on_random_bodies() -> None:
    rng = random.Random(7)
    alphabet = ["a", " ", "é", "\x00", "\ud800", "\\", "u", "😀", '"']

    def value(depth: int) -> object:
        kind = rng.random()
        if depth > 36 or kind < 0.4:
            return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 4)))
        if kind < 0.7:
            return [value(depth + 1) for _ in range(rng.randint(0, 2))]
        return {"".join(rng.choice(alphabet[:3]) for _ in range(2)): value(depth + 1) for _ in range(rng.randint(0, 2))}

    for _ in range(400):
        raw = json.dumps(value(0), ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogatepass")
        assert _verdict(parse_json, raw) == _full_walk(raw), raw[:200]
