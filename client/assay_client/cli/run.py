"""`assay submit`: send every item through the batch endpoint, optionally wait, write results in order.

Resuming: chunk keys are derived from content (see assay_client.idempotency), so running the same
command again — after it finished, or after Ctrl-C — sends the same chunks with the same keys; the API
answers those with the jobs made the first time, and only what never reached it is created.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from assay_client.batching import Chunk, ChunkResult
from assay_client.cli.ordered import OrderedWriter
from assay_client.cli.progress import Display
from assay_client.cli.sources import Item
from assay_client.client import Client
from assay_client.errors import WaitTimeout
from assay_client.idempotency import content_key, entry_digest
from assay_client.inputs import Audio, WebhookLike, webhook_dict
from assay_client.models import Job


@dataclass(frozen=True)
class SubmitOptions:
    analysis: str
    metadata: Mapping[str, Any] | None = None
    webhook: WebhookLike | None = None
    chunk_size: int = 250
    wait: bool = False
    timeout: float | None = None
    concurrency: int = 8
    salt: str = ""  # non-empty: new jobs even for content sent before (--fresh)
    uploads: bool = False  # one file upload per item (call records), not the batch endpoint
    job_options: Mapping[str, Any] | None = None  # the API's "options" ({"cache": false}, ...)
    columns: Mapping[str, str] | None = None  # call records: the file's column names
    parameters: Mapping[str, Any] | None = None  # call records: detection thresholds


def record(item: Item, job: Job) -> dict[str, Any]:
    """One output line: where the input came from, then the job as the API returns it."""
    return {"source": item.source, **job.to_dict()}


def submit_items(
    client: Client,
    items: list[Item],
    options: SubmitOptions,
    emit: Callable[[dict[str, Any]], None],
    display: Display,
) -> None:
    """Write one record per item, in input order: the accepted job, or with `wait` the final one."""
    writer: OrderedWriter[dict[str, Any]] = OrderedWriter(emit)
    index_of: dict[str, list[int]] = {}
    lock = threading.Lock()

    def submit(on_chunk: Callable[[ChunkResult], None]) -> None:
        if options.uploads:
            upload_each(client, items, options, on_chunk)
            return
        client.submit_many(
            options.analysis,
            [item.request for item in items],
            metadata=options.metadata,
            webhook=options.webhook,
            chunk_size=options.chunk_size,
            keys="content",
            salt=options.salt,
            on_chunk=on_chunk,
            options=options.job_options,
        )

    if not options.wait:

        def written(result: ChunkResult) -> None:
            display.on_submitted(result.jobs, result.created)
            for offset, job in enumerate(result.jobs):
                position = result.chunk.start + offset
                writer.put(position, record(items[position], job))

        submit(written)
        return

    watcher = client.watcher(timeout=options.timeout, concurrency=options.concurrency)

    known: dict[str, Job] = {}  # each accepted job as last seen: what a wait that runs out still writes

    def accepted(result: ChunkResult) -> None:
        with lock:
            for offset, job in enumerate(result.jobs):
                index_of.setdefault(job.id, []).append(result.chunk.start + offset)
                known[job.id] = job
        display.on_submitted(result.jobs, result.created)
        watcher.add(result.jobs)

    def submitter() -> None:
        try:
            submit(accepted)
        except BaseException as exc:
            watcher.fail(exc)
        else:
            watcher.close()

    threading.Thread(target=submitter, name="assay-submit", daemon=True).start()
    written: set[int] = set()
    try:
        for job in watcher:
            display.on_finished(job)
            with lock:
                positions = index_of[job.id]
            for position in positions:
                writer.put(position, record(items[position], job))
                written.add(position)
    except WaitTimeout as exc:
        # The wait ran out, not the jobs: write every accepted job as last seen (queued or running, with its id),
        # in input order up to the first input never accepted, so the ids are not lost.
        if isinstance(exc.job, Job):
            known[exc.job.id] = exc.job
        with lock:
            late = {p: known[job_id] for job_id, positions in index_of.items() for p in positions if p not in written}
        for position in sorted(late):
            writer.put(position, record(items[position], late[position]))
        raise


def upload_each(
    client: Client, items: list[Item], options: SubmitOptions, on_chunk: Callable[[ChunkResult], None]
) -> None:
    """One multipart POST /v1/jobs per file (call records take no batch), each keyed by the file's content
    and place so that a re-run resumes like the batch path: a file sent before comes back as its old job."""
    for index, item in enumerate(items):
        upload = item.request.audio
        assert upload is not None
        metadata = {**(options.metadata or {}), **item.request.metadata}
        webhook = webhook_dict(options.webhook)
        described = {"analysis": options.analysis, "sha256": _sha256(upload), "metadata": metadata}
        # What else shapes the job changes its key (a re-run with other columns is a new job, not a replay);
        # left out when unset, so keys made before these options existed still resume.
        extra = {"options": options.job_options, "columns": options.columns, "parameters": options.parameters}
        digest = entry_digest({**described, **{name: value for name, value in extra.items() if value}})
        key = content_key([digest], chunk_index=index, webhook=webhook, salt=options.salt)
        job, created = client.submit_file(
            options.analysis,
            upload,
            metadata=metadata,
            webhook=webhook,
            idempotency_key=key,
            options=options.job_options,
            columns=options.columns,
            parameters=options.parameters,
        )
        chunk = Chunk(index=index, start=index, key=key, body={"jobs": [upload.filename]})
        on_chunk(ChunkResult(chunk, [job], created=created))


def _sha256(upload: Audio) -> str:
    """The file's digest, read a megabyte at a time: a 2 GiB call-record file is not held in memory for it."""
    if upload.path is None:
        return hashlib.sha256(upload.read()).hexdigest()
    digest = hashlib.sha256()
    with upload.path.open("rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def exit_code(display: Display) -> int:
    """0: every job succeeded (or, without --wait, was accepted); 2: some failed, were canceled or erased."""
    return 2 if display.statuses["failed"] or display.statuses["canceled"] or display.statuses["erased"] else 0
