"""The upload folder's sweep: spooled call-record files that no live job needs are deleted.

The worker deletes a job's file once its result is written, and the API deletes the files of requests that
made no job; what is left is the rare file of a crash in between (an API worker killed after spooling, a
worker killed after writing). The sweep deletes any file older than `ASSAY_UPLOAD_GRACE_SECONDS` that no
queued or running job names: the grace covers a request still between its spool and its commit.
"""

from __future__ import annotations

import logging
import time

from pipeline.context import WorkerContext
from store.maintenance import live_upload_names

log = logging.getLogger(__name__)


def sweep_uploads(ctx: WorkerContext) -> int:
    """Delete stale spooled files; returns how many."""
    folder = ctx.settings.cdr_upload_dir
    if not folder.is_dir():
        return 0
    cutoff = time.time() - ctx.settings.upload_grace_seconds
    stale = [path for path in folder.iterdir() if path.is_file() and path.stat().st_mtime < cutoff]
    if not stale:
        return 0
    with ctx.db.connect() as conn:
        live = live_upload_names(conn)
    removed = 0
    for path in stale:
        if path.name not in live:
            path.unlink(missing_ok=True)
            removed += 1
    if removed:
        log.info("stale uploads deleted", extra={"count": removed})
    return removed
