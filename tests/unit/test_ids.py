"""Identifiers: time-ordered ids sort in creation order, stay unguessable and match the published pattern."""

from __future__ import annotations

import base64
import re
import time

from store.ids import ORDERED_RANDOM_BITS, id_pattern, new_id, new_ordered_id


def _millis(job_id: str) -> int:
    token = job_id.split("_", 1)[1].upper()
    return int.from_bytes(base64.b32hexdecode(token), "big") >> ORDERED_RANDOM_BITS


def test_ordered_ids_sort_as_text_in_the_order_they_were_made() -> None:
    made = []
    for _ in range(5):
        made += [new_ordered_id("job") for _ in range(3)]
        time.sleep(0.002)  # the order within one millisecond is random; across milliseconds it is time
    by_millisecond = [made[i] for i in range(0, len(made), 3)]
    assert by_millisecond == sorted(by_millisecond)
    assert [_millis(i) for i in sorted(made)] == sorted(_millis(i) for i in made)  # text order is time order


def test_ordered_ids_carry_the_creation_time_and_fresh_random_bits() -> None:
    before = time.time_ns() // 1_000_000
    ids = [new_ordered_id("job") for _ in range(1000)]
    after = time.time_ns() // 1_000_000
    assert all(before <= _millis(i) <= after for i in ids)
    assert len(set(ids)) == len(ids)
    assert len({i[-14:] for i in ids}) == len(ids)  # the last 14 characters are the random 70 bits


def test_every_id_matches_the_published_pattern_and_keeps_its_length() -> None:
    pattern = re.compile(id_pattern("job"))
    ordered, random_ = new_ordered_id("job"), new_id("job")
    assert pattern.match(ordered) and pattern.match(random_)
    assert len(ordered) == len(random_) == len("job_") + 24
    assert re.fullmatch(r"job_[0-9a-v]{24}", ordered)


def test_the_id_encoding_is_base32hex() -> None:
    import secrets

    from store.ids import base32hex_120

    for value in [0, 1, 2**120 - 1, *(secrets.randbits(120) for _ in range(1000))]:
        assert base32hex_120(value) == base64.b32hexencode(value.to_bytes(15, "big")).decode().lower()
