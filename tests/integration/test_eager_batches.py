"""Dynamic batching: a lone job on an idle queue runs at once; a queue with work waiting fills whole batches.

The worker's batch wait is set to 10 s so that waiting for it would be unmistakable.
"""

from __future__ import annotations

import secrets
import time

from sqlalchemy import Engine

from tests.integration.helpers import wait_all_final
from tests.support import Client, Stack

LONG_WAIT_MS = "10000"


def test_lone_jobs_run_at_once_and_a_backlog_fills_whole_batches(stack: Stack, new_key, db: Engine) -> None:
    prefix = f"eager{secrets.token_hex(3)}"
    worker = stack.worker("eager", ASSAY_QUEUE_PREFIX=prefix, ASSAY_MAX_BATCH_WAIT_MS=LONG_WAIT_MS)
    # One message per job, so the backlog below is 256 messages in the queue at once.
    _, url = stack.api(ASSAY_QUEUE_PREFIX=prefix, ASSAY_PUBLISH_CHUNK_SIZE="1")
    client = Client(url, new_key())

    for i in range(3):
        began = time.monotonic()
        job = client.submit(f"a lone ticket {i}: the app works well")
        done = client.get(f"/v1/jobs/{job['id']}", params={"wait": 15}).json()
        elapsed = time.monotonic() - began
        assert done["status"] == "succeeded", done
        assert elapsed < 3, f"a lone job took {elapsed:.1f} s: it waited for the batch wait ({LONG_WAIT_MS} ms)"

    before = len(worker.log_events("batch processed"))
    ids = [job["id"] for job in client.submit_batch([f"backlog ticket {i}" for i in range(256)])]
    assert set(wait_all_final(db, ids, timeout=120).values()) == {"succeeded"}
    sizes = [r["size"] for r in worker.batches_logged(256, since=before, timeout=30)]
    mean = sum(sizes) / len(sizes)
    print(f"eager batches: backlog of 256 in {len(sizes)} batches, mean {mean:.1f}: {sizes}")
    assert mean >= 24, sizes
