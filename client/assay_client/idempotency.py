"""Idempotency keys: random ones for one call's retries, content-derived ones for re-runs.

The API stores entry *i* of a batch sent with key K under `K#i` and answers a replay (same key,
same body) with the jobs it created the first time. A key derived from what is sent, and where it
sits in the input, therefore makes "send it again" safe across processes: a re-run of the same
input produces the same keys and gets the original jobs back instead of creating new ones.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from typing import Any

CONTENT_KEY_PREFIX = "ac1-"  # bump the version if the derivation below ever changes


def canonical_json(value: Any) -> bytes:
    """One byte string per JSON value, whatever the key order: what the hashes below are taken of."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_digest(entry: dict[str, Any]) -> str:
    """SHA-256 of one batch entry (analysis, input, metadata, webhook) as canonical JSON."""
    return hashlib.sha256(canonical_json(entry)).hexdigest()


def content_key(
    entry_digests: Sequence[str], *, chunk_index: int, webhook: dict[str, Any] | None = None, salt: str = ""
) -> str:
    """The Idempotency-Key of one chunk: a hash of its entries' digests, its position and the batch webhook.

    The position is part of it so that two identical chunks of one input (a file of repeated lines) stay two
    sets of jobs; `salt` lets a caller ask for fresh jobs for content it sent before.
    """
    material = canonical_json([salt, chunk_index, webhook, list(entry_digests)])
    return CONTENT_KEY_PREFIX + hashlib.sha256(material).hexdigest()


def random_key() -> str:
    """A key for one logical request: reused on its retries, never by another request."""
    return "ar1-" + uuid.uuid4().hex
