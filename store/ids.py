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
    return f"{prefix}_{base64.b32hexencode(value.to_bytes(15, 'big')).decode().lower()}"


def new_webhook_secret() -> str:
    """A Standard Webhooks signing secret: `whsec_` + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def id_pattern(prefix: str) -> str:
    """The ids `new_id(prefix)` makes, as a regular expression (published in the OpenAPI document)."""
    return rf"^{prefix}_[A-Za-z0-9]{{1,64}}$"
