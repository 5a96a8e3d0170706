"""`AsyncClient`: the same API for asyncio code, on httpx.AsyncClient.

Requests, retry decisions and parsing are shared with `Client` (`_http`, `batching`); only the
sending, sleeping and waiting-for-many differ.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from assay_client import _http
from assay_client._http import Call, RetryEvent, decode, job_path, retry_delay
from assay_client.batching import (
    DEFAULT_CHUNK_BYTES,
    DEFAULT_CHUNK_SIZE,
    ChunkResult,
    KeyMode,
    batch_jobs,
    plan_chunks,
)
from assay_client.client import _headers, _seconds, in_input, job_call, list_call, page
from assay_client.errors import AssayError, Gone, WaitTimeout, wait_limit
from assay_client.inputs import Audio, ItemLike, WebhookLike, webhook_dict
from assay_client.models import Analysis, CancelResult, Job, JobPage, WebhookEvent
from assay_client.retry import RetryPolicy
from assay_client.watch import erased_job


class AsyncClient:
    """Like `Client`, with `await`; `iter_results` and `list_jobs` are async iterators."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        on_retry: Callable[[RetryEvent], None] | None = None,
        long_poll: float = 30.0,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self.on_retry = on_retry
        self.long_poll = long_poll
        self._wait_limit: float | None = None  # the server's longest ?wait, once a refusal named it
        self._timeout = httpx.Timeout(timeout)
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers=_headers(api_key, headers),
            timeout=self._timeout,
            transport=transport,
            follow_redirects=False,
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, call: Call) -> httpx.Response:
        started = time.monotonic()
        attempts = 0
        while True:
            attempts += 1
            try:
                with call.opened_files() as files:
                    options = call.request_options(files, self._timeout)
                    response = await self._http.request(call.method, call.path, **options)
            except httpx.TransportError as exc:
                decision = retry_delay(call, self.retry, attempts=attempts, elapsed=time.monotonic() - started, exc=exc)
                if decision is None:
                    raise _http.connection_error(exc, call) from exc
            else:
                decision = retry_delay(
                    call, self.retry, attempts=attempts, elapsed=time.monotonic() - started, response=response
                )
                if decision is None:
                    return response
            delay, error = decision
            if self.on_retry:
                self.on_retry(RetryEvent(call.method, call.path, attempts, delay, error.status, error))
            await asyncio.sleep(delay)

    async def _call(self, call: Call) -> Any:
        return decode(await self._send(call))

    async def submit(
        self,
        analysis: str,
        text: str | None = None,
        *,
        audio: bytes | str | Path | Audio | None = None,
        metadata: Mapping[str, Any] | None = None,
        webhook: WebhookLike | None = None,
        idempotency_key: str | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> Job:
        call = job_call(analysis, text, audio, metadata, webhook, idempotency_key, options=options)
        return Job.from_dict(await self._call(call))

    async def submit_file(
        self,
        analysis: str,
        file: bytes | str | Path | Audio,
        *,
        metadata: Mapping[str, Any] | None = None,
        webhook: WebhookLike | None = None,
        idempotency_key: str | None = None,
        options: Mapping[str, Any] | None = None,
        columns: Mapping[str, str] | None = None,
        parameters: Mapping[str, Any] | None = None,
    ) -> tuple[Job, bool]:
        """One job from a file sent as a multipart upload, and whether it was created (see `Client.submit_file`)."""
        call = job_call(
            analysis,
            None,
            file,
            metadata,
            webhook,
            idempotency_key,
            options=options,
            columns=columns,
            parameters=parameters,
        )
        response = await self._send(call)
        return Job.from_dict(decode(response)), response.status_code == 202

    async def submit_many(
        self,
        analysis: str,
        items: Iterable[ItemLike],
        *,
        metadata: Mapping[str, Any] | None = None,
        webhook: WebhookLike | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        keys: KeyMode = "random",
        idempotency_key: str | None = None,
        salt: str = "",
        on_chunk: Callable[[ChunkResult], None] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> list[Job]:
        jobs: list[Job] = []
        for chunk in plan_chunks(
            analysis,
            items,
            metadata=metadata,
            webhook=webhook_dict(webhook),
            options=options,
            chunk_size=chunk_size,
            chunk_bytes=chunk_bytes,
            keys=keys,
            key_prefix=idempotency_key,
            salt=salt,
        ):
            try:
                response = await self._send(
                    Call("POST", "/v1/jobs/batch", json=chunk.body, headers={"Idempotency-Key": chunk.key})
                )
                answer = decode(response)
            except AssayError as exc:
                raise in_input(exc, chunk.start, len(chunk.body["jobs"]), len(jobs)) from None
            created = batch_jobs(answer, chunk)
            jobs.extend(created)
            if on_chunk:
                on_chunk(ChunkResult(chunk, created, created=response.status_code == 202))
        return jobs

    async def get(self, job_id: str, *, wait: float = 0) -> Job:
        if wait and self._wait_limit is not None:
            wait = min(wait, self._wait_limit)
        params = {"wait": _seconds(wait)} if wait else None
        try:
            return Job.from_dict(await self._call(Call("GET", job_path(job_id), params=params, wait=wait)))
        except AssayError as exc:
            if (limit := wait_limit(exc, wait)) is None:
                raise
        self._wait_limit = self.long_poll = limit
        return await self.get(job_id, wait=limit)

    async def wait(self, job_id: str, timeout: float | None = None) -> Job:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            asked = self.long_poll if remaining is None else max(0.0, min(self.long_poll, remaining))
            began = time.monotonic()
            job = await self.get(job_id, wait=asked)
            if job.is_final:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"job {job_id} is still {job.status} after {timeout}s", job=job, pending=[job_id])
            spent = time.monotonic() - began
            if asked > 1 and spent < 0.5:
                await asyncio.sleep(0.5 - spent)

    async def iter_results(
        self, jobs: Iterable[Job | str], *, timeout: float | None = None, concurrency: int = 8
    ) -> AsyncIterator[Job]:
        """Each job once final, as they finish; at most `concurrency` long-polls open at once."""
        gate = asyncio.Semaphore(concurrency)
        deadline = None if timeout is None else time.monotonic() + timeout

        async def one(item: Job | str) -> Job:
            if isinstance(item, Job) and item.is_final:
                return item
            async with gate:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    return await self.wait(item if isinstance(item, str) else item.id, left)
                except Gone as exc:  # erased meanwhile: its bare record is final, as in the sync client
                    found = erased_job(exc)
                    if found is None:
                        raise
                    return found

        unique = list({(j if isinstance(j, str) else j.id): j for j in jobs}.values())
        tasks = [asyncio.ensure_future(one(item)) for item in unique]
        try:
            for finished in asyncio.as_completed(tasks):
                yield await finished
        finally:
            for task in tasks:
                task.cancel()

    async def wait_many(
        self, jobs: Iterable[Job | str], *, timeout: float | None = None, concurrency: int = 8
    ) -> list[Job]:
        given = list(jobs)
        done = {job.id: job async for job in self.iter_results(given, timeout=timeout, concurrency=concurrency)}
        return [done[j if isinstance(j, str) else j.id] for j in given]

    async def cancel(self, job_id: str) -> CancelResult:
        payload = await self._call(Call("POST", job_path(job_id, "/cancel")))
        return CancelResult(Job.from_dict(payload["job"]), payload["cancellation"])

    async def delete(self, job_id: str) -> Job:
        return Job.from_dict(await self._call(Call("DELETE", job_path(job_id))))

    async def webhook_attempts(self, job_id: str) -> list[WebhookEvent]:
        payload = await self._call(Call("GET", job_path(job_id, "/webhooks")))
        return [WebhookEvent.from_dict(e) for e in payload["data"]]

    async def list_page(
        self, *, status: str | None = None, analysis: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> JobPage:
        return page(await self._call(list_call(status, analysis, limit, cursor)))

    async def list_jobs(
        self,
        *,
        status: str | None = None,
        analysis: str | None = None,
        page_size: int = 100,
        limit: int | None = None,
    ) -> AsyncIterator[Job]:
        cursor: str | None = None
        count = 0
        while True:
            size = page_size if limit is None else min(page_size, limit - count)
            if size <= 0:
                return
            current = await self.list_page(status=status, analysis=analysis, limit=size, cursor=cursor)
            for job in current.jobs:
                yield job
                count += 1
            if not current.next_cursor:
                return
            cursor = current.next_cursor

    async def analyses(self) -> list[Analysis]:
        return [Analysis.from_dict(a) for a in (await self._call(Call("GET", "/v1/analyses")))["data"]]

    async def webhook_secret(self) -> dict[str, Any]:
        return await self._call(Call("GET", "/v1/webhooks/secret"))

    async def redeliver(self, event_id: str) -> dict[str, Any]:
        return await self._call(Call("POST", f"/v1/webhooks/{quote(event_id, safe='')}/redeliver"))
