"""submit_many's plan: cut the input into batch requests, each with its Idempotency-Key.

Shared by the sync and async clients. A chunk's key is fixed before its first try and reused on
every retry, so a retried chunk can never create its jobs twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from assay_client.idempotency import content_key, entry_digest, random_key
from assay_client.inputs import ItemLike, as_request, chunks
from assay_client.models import Job

DEFAULT_CHUNK_SIZE = 250
DEFAULT_CHUNK_BYTES = 24 * 1024 * 1024  # under the API's 40 MiB default body limit, with room to spare

KeyMode = Literal["random", "content"]


@dataclass(frozen=True)
class Chunk:
    """One POST /v1/jobs/batch: entries `start` to `start + len(body["jobs"]) - 1` of the input."""

    index: int
    start: int
    key: str
    body: dict[str, Any]

    @property
    def size(self) -> int:
        return len(self.body["jobs"])


@dataclass(frozen=True)
class ChunkResult:
    """Handed to `on_chunk` as each chunk is accepted. `created` is False for a replay: the jobs existed."""

    chunk: Chunk
    jobs: list[Job]
    created: bool


def plan_chunks(
    analysis: str,
    items: Iterable[ItemLike],
    *,
    metadata: Mapping[str, Any] | None = None,
    webhook: dict[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    keys: KeyMode = "random",
    key_prefix: str | None = None,
    salt: str = "",
) -> Iterator[Chunk]:
    """Lazily: each chunk's entries are built (and audio files read) only when it is about to be sent.

    keys="random": a fresh key per chunk (safe retries within this call). keys="content": derived from the
    entries and the chunk's position (a re-run of the same input gets the same jobs back). `key_prefix`,
    if given, wins over both: chunk *n* is keyed f"{key_prefix}.{n}".
    """
    start = 0
    for index, requests in enumerate(chunks((as_request(i) for i in items), chunk_size, chunk_bytes)):
        entries = [r.entry(analysis, metadata, options) for r in requests]
        if key_prefix is not None:
            key = f"{key_prefix}.{index}"
        elif keys == "content":
            key = content_key([entry_digest(e) for e in entries], chunk_index=index, webhook=webhook, salt=salt)
        else:
            key = random_key()
        body: dict[str, Any] = {"jobs": entries}
        if webhook:
            body["webhook"] = webhook
        yield Chunk(index=index, start=start, key=key, body=body)
        start += len(entries)


def batch_jobs(payload: Any, chunk: Chunk) -> list[Job]:
    jobs = [Job.from_dict(j) for j in payload["data"]]
    if len(jobs) != chunk.size:  # the API promises one job per entry, in order
        raise RuntimeError(f"batch of {chunk.size} answered with {len(jobs)} jobs")
    return jobs
