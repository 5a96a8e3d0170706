"""Opaque, unguessable identifiers with a type prefix (`job_...`, `ten_...`, `key_...`)."""

from __future__ import annotations

import base64
import secrets


def new_id(prefix: str, nbytes: int = 15) -> str:
    """`prefix_` + lowercase base32 of random bytes: URL-safe, case-insensitive, 120 bits by default."""
    token = base64.b32encode(secrets.token_bytes(nbytes)).decode().rstrip("=").lower()
    return f"{prefix}_{token}"
