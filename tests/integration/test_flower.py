"""Flower, started the way `make run` starts it, lists the worker and every processed job."""

from __future__ import annotations

import contextlib
import secrets

import requests

from tests.integration.helpers import wait_all_final
from tests.support import Client, Stack, free_port, wait_for


def test_flower_lists_the_worker_and_each_job_as_a_task(stack: Stack, new_key, db) -> None:
    env = {"ASSAY_QUEUE_PREFIX": f"f{secrets.token_hex(3)}"}
    port, auth = free_port(), ("flower-admin", secrets.token_hex(8))
    flower = stack.flower(port, *auth)
    base = f"http://127.0.0.1:{port}"

    def flower_up() -> bool:
        assert flower.alive(), flower.log_text()[-2000:]
        with contextlib.suppress(requests.RequestException):
            return requests.get(f"{base}/healthcheck", timeout=2).status_code == 200
        return False

    wait_for(flower_up, 60, what="flower")
    assert requests.get(f"{base}/api/workers", timeout=5).status_code == 401, "basic auth is enforced"

    worker = stack.worker("flowerwatched", **env)
    _, url = stack.api(**env)
    client = Client(url, new_key())
    ids = [client.submit(f"flower job {i}: lovely")["id"] for i in range(3)]
    ids += [job["id"] for job in client.submit_batch([f"flower batch job {i}" for i in range(5)])]
    assert set(wait_all_final(db, ids, 60).values()) == {"succeeded"}

    def tasks_listed() -> dict | None:
        listed = requests.get(f"{base}/api/tasks", auth=auth, timeout=5).json()
        return listed if set(ids) <= set(listed) and all(listed[i]["state"] == "SUCCESS" for i in ids) else None

    tasks = wait_for(tasks_listed, 30, interval=0.5, what="flower to list every job as a succeeded task")
    assert all(tasks[i]["name"] == "assay.analyze" for i in ids)
    assert all(tasks[i]["worker"].startswith("flowerwatched@") for i in ids)

    workers = wait_for(
        lambda: requests.get(f"{base}/api/workers", params={"refresh": "1"}, auth=auth, timeout=10).json(),
        30,
        what="flower to list workers",
    )
    assert any(name.startswith("flowerwatched@") for name in workers), workers
    assert worker.alive()
