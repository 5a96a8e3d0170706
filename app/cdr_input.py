"""CDR uploads: checked cheaply, then spooled to the upload folder; the job row names the file.

Why a folder and not PostgreSQL (where audio goes): a CDR file is up to `ASSAY_MAX_CDR_BYTES` (GiBs), not
25 MiB. Through bytea it would be copied three more times (escaped on the way in, TOASTed, read back by
the worker) and held whole in an API worker's memory; on disk it is written once, streamed, and read by
DuckDB in parallel straight from the file. The row is still the truth: the file is fsynced before the
row commits, a file no live job names is deleted by the maintenance worker after a grace period, and the
worker deletes a job's file once its result is written. The API, the tabular workers and the maintenance
worker must share the folder (one host, or one volume they all mount).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any

from app.entries import EntryError, canonical_hash, check_metadata
from app.offload import off_loop
from app.spool_upload import SpoolFile
from config import Settings
from config.catalog import AnalysisConfig
from models.cdr.spec import CdrInputError, CdrParameters, EmptyCdrFileError, Sniffed, column_map, head_bytes, sniff
from store.api import JobSpec

CHUNK = 1 << 20


def _too_large(settings: Settings, actual: int) -> EntryError:
    return EntryError(
        413,
        "input_too_large",
        f"the call-record file is over {settings.max_cdr_bytes} bytes",
        {"limit": settings.max_cdr_bytes, "actual": actual},
    )


def _spool(source: IO[bytes], settings: Settings) -> SpoolFile:
    """The upload as a file in the spool folder, hashed: the form parser's own when it already wrote one
    there (app/spool_upload.py), else a copy (a small body parsed in memory, base64 from JSON). Bounded by
    the size limit."""
    if isinstance(source, SpoolFile):
        spooled = source
    else:
        spooled = SpoolFile(settings.cdr_upload_dir, head_bytes(settings.max_cdr_line_bytes))
        try:
            while chunk := source.read(CHUNK):
                spooled.write(chunk)
                if spooled.size > settings.max_cdr_bytes:
                    break
        except BaseException:
            spooled.close()
            raise
    if spooled.size > settings.max_cdr_bytes:
        spooled.close()
        raise _too_large(settings, spooled.size)
    return spooled


def _final_name(sniffed: Sniffed, digest: str) -> str:
    suffix = (".csv" if sniffed.format == "csv" else ".jsonl") + (".gz" if sniffed.compression == "gzip" else "")
    return f"cdr-{digest[:16]}-{secrets.token_hex(6)}{suffix}"


def cdr_spec(
    config: AnalysisConfig,
    source: IO[bytes],
    *,
    filename: str | None,
    columns: Any,
    parameters: Any,
    metadata: dict[str, Any],
    settings: Settings,
    idempotency_key: str | None,
) -> JobSpec:
    """Validate the request's columns and parameters, spool the file, look at its first lines; EntryError
    (nothing stored) when any of it is wrong."""
    try:
        mapping = column_map(columns)
    except ValueError as exc:
        raise EntryError(422, "validation_error", str(exc), {"field": "columns"}) from None
    try:
        params = CdrParameters.resolve(parameters, config.parameters)
    except ValueError as exc:
        raise EntryError(422, "invalid_parameters", str(exc), {"defaults": config.parameters}) from None
    check_metadata(metadata, settings)
    spooled = _spool(source, settings)  # in this greenlet: a raw body is read from gevent's socket
    size, digest = spooled.size, spooled.sha256
    try:
        if size == 0:
            raise EntryError(422, "empty_file", "the call-record file is empty")
        try:
            sniffed = sniff(
                spooled.head, mapping, max_line_bytes=settings.max_cdr_line_bytes, complete=size <= len(spooled.head)
            )
        except EmptyCdrFileError as exc:
            raise EntryError(422, "empty_file", exc.message) from None
        except CdrInputError as exc:
            raise EntryError(422, "invalid_input", exc.message, {"line": exc.row}) from None
        name = _final_name(sniffed, digest)
        # fsynced before the row commits: a committed row never names a file a crash could lose.
        off_loop(spooled.keep, settings.cdr_upload_dir / name)
    finally:
        spooled.close()
    described = {
        "cdr": {
            "file": name,
            "bytes": size,
            "sha256": digest,
            "filename": filename,
            "format": sniffed.format,
            "compression": sniffed.compression,
        },
        "columns": mapping,
        "parameters": params.to_json(),
    }
    hashed = {**described, "cdr": {k: v for k, v in described["cdr"].items() if k != "file"}}
    body = {"analysis": config.name, "input": hashed, "metadata": metadata}
    return JobSpec(
        analysis=config.name,
        input=described,
        metadata=metadata,
        idempotency_key=idempotency_key,
        request_hash=canonical_hash(body) if idempotency_key else None,
    )


@dataclass
class Creation:
    """Whether the specs became new jobs (an idempotent replay returns the originals, which have their own)."""

    created: bool = False

    def record(self, result: tuple[list[dict[str, Any]], bool]) -> tuple[list[dict[str, Any]], bool]:
        self.created = result[1]
        return result


@contextmanager
def spooled_until_created(specs: list[JobSpec], settings: Settings) -> Iterator[Creation]:
    """Delete the spooled files of specs that did not become jobs: a rejected batch, back-pressure, a
    database error, an idempotent replay. (A crash in between leaves them to the maintenance worker.)"""
    creation = Creation()
    try:
        yield creation
    finally:
        if not creation.created:
            discard_spooled(specs, settings)


def discard_spooled(specs: list[JobSpec], settings: Settings) -> None:
    """Delete the files of specs that will not become jobs."""
    for spec in specs:
        discard_file((spec.input.get("cdr") or {}).get("file") if isinstance(spec.input, dict) else None, settings)


def discard_file(name: Any, settings: Settings) -> None:
    """Delete one spooled file by the name a job's input gives it (an erased job's, say)."""
    if isinstance(name, str) and name and "/" not in name:
        (settings.cdr_upload_dir / name).unlink(missing_ok=True)
