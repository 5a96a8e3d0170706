"""Opaque, unguessable identifiers with a type prefix (`job_...`, `ten_...`, `key_...`)."""

from __future__ import annotations

import base64
import secrets


def new_id(prefix: str, nbytes: int = 15) -> str:
    """`prefix_` + lowercase base32 of random bytes: URL-safe, case-insensitive, 120 bits by default."""
    token = base64.b32encode(secrets.token_bytes(nbytes)).decode().rstrip("=").lower()
    return f"{prefix}_{token}"


def new_webhook_secret() -> str:
    """A Standard Webhooks signing secret: `whsec_` + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def id_pattern(prefix: str) -> str:
    """The ids `new_id(prefix)` makes, as a regular expression (published in the OpenAPI document)."""
    return rf"^{prefix}_[A-Za-z0-9]{{1,64}}$"
