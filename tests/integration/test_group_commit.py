"""Concurrent single submissions written together (app/group_commit.py), through a real gunicorn."""

from __future__ import annotations

import re
import secrets
from concurrent.futures import ThreadPoolExecutor

import requests
from sqlalchemy import Engine, select

from store.tables import jobs
from tests.support import Client


def _group_histogram(api_url: str) -> tuple[float, float]:
    text = requests.get(f"{api_url}/metrics", timeout=10).text
    count = re.search(r"^assay_submission_group_requests_count ([0-9.e+]+)$", text, re.M)
    total = re.search(r"^assay_submission_group_requests_sum ([0-9.e+]+)$", text, re.M)
    return (float(count.group(1)) if count else 0.0), (float(total.group(1)) if total else 0.0)


def test_concurrent_submissions_share_transactions_and_each_gets_its_own_job(api_url: str, new_key, db: Engine) -> None:
    before = _group_histogram(api_url)
    first, second = Client(api_url, new_key()), Client(api_url, new_key())
    tag = secrets.token_hex(4)
    same = f"the same words from both tenants {tag}"
    work = (
        [(first, f"first tenant's text {i} {tag}") for i in range(40)]
        + [(second, f"second tenant's text {i} {tag}") for i in range(40)]
        + [(first, same)] * 4
        + [(second, same)] * 4
    )
    with ThreadPoolExecutor(32) as pool:
        docs = list(pool.map(lambda item: item[0].submit(item[1]), work))
    ids = [doc["id"] for doc in docs]
    assert len(set(ids)) == len(ids)
    with db.connect() as conn:
        rows = {
            r.id: r
            for r in conn.execute(
                select(jobs.c.id, jobs.c.owner, jobs.c.input, jobs.c.coalesced_into).where(jobs.c.id.in_(ids))
            )
        }
    assert set(rows) == set(ids), "every 202 names a committed row"
    pairs = list(zip(work, docs, strict=True))
    owners = {client: {rows[doc["id"]].owner for (c, _), doc in pairs if c is client} for client in (first, second)}
    assert len(owners[first]) == 1 and len(owners[second]) == 1 and owners[first] != owners[second]
    for (_, text), doc in pairs:
        assert rows[doc["id"]].input["text"] == text
    for client in (first, second):  # identical text in flight attaches to a source of the same tenant
        mine = [rows[doc["id"]] for (c, text), doc in pairs if c is client and text == same]
        sources = {r.id for r in mine if r.coalesced_into is None}
        # One per API process at most: two processes' transactions in flight at once cannot see each other.
        assert 1 <= len(sources) <= 2 and all(r.coalesced_into in sources for r in mine if r.id not in sources)
    count, total = (after - was for after, was in zip(_group_histogram(api_url), before, strict=True))
    assert 0 < count < len(work) and total == len(work), "some transactions wrote several requests"
