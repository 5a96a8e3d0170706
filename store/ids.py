"""Opaque, unguessable identifiers with a type prefix (`job_...`, `ten_...`, `key_...`)."""

from __future__ import annotations

import base64
import secrets
import time

ORDERED_RANDOM_BITS = 70


def new_id(prefix: str, nbytes: int = 15) -> str:
    """`prefix_` + lowercase base32 of random bytes: URL-safe, case-insensitive, 120 bits by default."""
    token = base64.b32encode(secrets.token_bytes(nbytes)).decode().rstrip("=").lower()
    return f"{prefix}_{token}"


def new_ordered_id(prefix: str) -> str:
    """`prefix_` + 24 lowercase base32hex characters: 50 bits of Unix milliseconds, then 70 random bits.

    For the big tables (jobs, webhook events), whose primary keys these are: a random id inserts at a
    random leaf of a 10M-row index (a page to read and, after every checkpoint, a full-page image in the
    WAL, per insert), a time-ordered one at the index's right edge, as UUIDv7 does. base32hex keeps the
    text order the numeric order. Still unguessable (70 random bits, new each time); the creation time it
    reveals is in the job document anyway.
    """
    value = (time.time_ns() // 1_000_000) << ORDERED_RANDOM_BITS | secrets.randbits(ORDERED_RANDOM_BITS)
    return f"{prefix}_{base32hex_120(value)}"


#: Every 10-bit value as its two lowercase base32hex digits.
_DIGIT_PAIRS = [a + b for a in "0123456789abcdefghijklmnopqrstuv" for b in "0123456789abcdefghijklmnopqrstuv"]


def base32hex_120(value: int) -> str:
    """A 120-bit number as 24 lowercase base32hex digits: what `base64.b32hexencode` writes for its 15
    bytes, without the pure-Python encoder that took 4 µs per id (one per job of a batch)."""
    return "".join([_DIGIT_PAIRS[(value >> shift) & 0x3FF] for shift in range(110, -1, -10)])


def new_webhook_secret() -> str:
    """A Standard Webhooks signing secret: `whsec_` + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def id_pattern(prefix: str) -> str:
    """The ids `new_id(prefix)` makes, as a regular expression (published in the OpenAPI document)."""
    return rf"^{prefix}_[A-Za-z0-9]{{1,64}}$"
