"""Call-record jobs on a tabular worker: the spooled file through `models.cdr.detect`, one job at a time.

The worker reads the file the API spooled (see app/cdr_input.py), looks at its first lines again (the file
is the truth, not what the API said about it), and runs the detection with the memory and thread limits
from settings. A file that cannot be read fails its job with `invalid_input` and the line; nothing in a
file can take the worker down. Once a job's result is written its file is deleted.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from models.base import InputError
from models.cdr.detect import CdrSource, InflatesTooLarge, detect
from models.cdr.spec import CdrInputError, CdrParameters, column_map, sniff
from pipeline.context import WorkerContext
from pipeline.inference import outcome
from store.worker import ClaimedJob, Outcome

log = logging.getLogger(__name__)

_NAME = re.compile(r"^cdr-[0-9a-f]{16}-[0-9a-f]{12}\.(csv|jsonl)(\.gz)?$")


def spooled_path(ctx: WorkerContext, job: ClaimedJob) -> Path | None:
    """The job's file in the upload folder; None if the input names none (or names one outside it)."""
    name = (job.input.get("cdr") or {}).get("file")
    if not isinstance(name, str) or not _NAME.match(name):
        return None
    return ctx.settings.cdr_upload_dir / name


def _run_one(ctx: WorkerContext, job: ClaimedJob) -> dict[str, Any] | InputError:
    s = ctx.settings
    path = spooled_path(ctx, job)
    if path is None or not path.exists():
        return InputError("input_missing", "the job's call-record file is gone (erased, or not on this host)")
    try:
        columns = column_map(job.input.get("columns"))
        params = CdrParameters.resolve(job.input.get("parameters"), {})
        with path.open("rb") as file:
            head = file.read(4 * s.max_cdr_line_bytes + 4)
        sniffed = sniff(head, columns, max_line_bytes=s.max_cdr_line_bytes, complete=path.stat().st_size <= len(head))
        report = detect(
            CdrSource(path, sniffed, columns),
            params,
            memory_limit_mb=s.cdr_memory_limit_mb,
            threads=s.cdr_threads,
            temp_dir=s.var_dir / "duckdb-tmp",
            max_line_bytes=s.max_cdr_line_bytes,
            max_flagged=s.cdr_max_flagged,
            max_inflated_bytes=s.max_cdr_inflated_bytes,
        )
    except InflatesTooLarge as exc:
        return InputError("input_too_large", f"{exc} (ASSAY_MAX_CDR_INFLATED_BYTES)")
    except (CdrInputError, ValueError) as exc:
        return InputError("invalid_input", getattr(exc, "message", str(exc))[:500])
    log.info("cdr detection", extra={"job_id": job.id, **report.totals, **report.timings})
    return report.to_json()


def run_cdr(ctx: WorkerContext, jobs: list[ClaimedJob]) -> list[Outcome]:
    """One outcome per job, in order; jobs run one after the other (each already uses every core)."""
    return [outcome(job, _run_one(ctx, job)) for job in jobs]


def cdr_counts(result: dict[str, Any] | None) -> tuple[int, int] | None:
    """(records read, callers flagged) of a cdr_fraud result, for the metrics counted after commit."""
    totals = (result or {}).get("totals")
    if not isinstance(totals, dict):
        return None
    return int(totals.get("records", 0)), int(totals.get("flagged_callers", 0))


def discard_inputs(ctx: WorkerContext, jobs: list[ClaimedJob], written: dict[str, str]) -> None:
    """Delete the files of call-record jobs whose final state is written (the rest wait for the sweep)."""
    for job in jobs:
        if job.id in written and (path := spooled_path(ctx, job)) is not None:
            path.unlink(missing_ok=True)
