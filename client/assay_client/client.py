"""`Client`: the synchronous Assay API client (httpx), with retries, long-poll waits and batch submission."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
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
from assay_client.errors import AssayError, WaitTimeout, wait_limit
from assay_client.idempotency import random_key
from assay_client.inputs import Audio, ItemLike, WebhookLike, webhook_dict
from assay_client.models import Analysis, CancelResult, Job, JobPage, WebhookEvent
from assay_client.retry import RetryPolicy
from assay_client.watch import JobWatcher

USER_AGENT = "assay-client/0.1"


def _headers(api_key: str, extra: Mapping[str, str] | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}", "User-Agent": USER_AGENT, **(extra or {})}


_ENTRY_LOC = re.compile(r"body\.jobs\[(\d+)\]")


def in_input(exc: AssayError, start: int, size: int, accepted: int) -> AssayError:
    """A chunk's error said of the whole input: per-entry `index` counted from the input's start (the API counts
    from the chunk's), and how many earlier entries were accepted (the API's "none was created" is the chunk's)."""
    if isinstance(exc.details, list):
        exc.details = [_shifted(entry, start) for entry in exc.details]
    elif isinstance(exc.details, dict) and (entry := _ENTRY_LOC.match(str(exc.details.get("loc", "")))):
        # A check of the whole body (a NUL character, say) names the entry by its place: `body.jobs[29]...`.
        exc.details = {**exc.details, "index": int(entry.group(1)) + start}
    if start:
        exc.message += f" (input entries {start}-{start + size - 1}; the {accepted} before them were accepted)"
    return exc


def _shifted(entry: Any, start: int) -> Any:
    if isinstance(entry, dict) and isinstance(entry.get("index"), int):
        return {**entry, "index": entry["index"] + start}
    return entry


def job_call(
    analysis: str,
    text: str | None,
    audio: bytes | str | Path | Audio | None,
    metadata: Mapping[str, Any] | None,
    webhook: WebhookLike | None,
    idempotency_key: str | None,
    *,
    options: Mapping[str, Any] | None = None,
    columns: Mapping[str, str] | None = None,
    parameters: Mapping[str, Any] | None = None,
) -> Call:
    """POST /v1/jobs: JSON for text, multipart for a file. Always keyed, so a retry cannot duplicate it.

    `options` are the API's job options ({"cache": false}, {"return_diagnostics": true}, ...); `columns`
    and `parameters` belong to call-record files (cdr_fraud): the file's column names and thresholds."""
    if (text is None) == (audio is None):
        raise ValueError("submit needs exactly one of text= or audio=")
    headers = {"Idempotency-Key": idempotency_key or random_key()}
    hook = webhook_dict(webhook)
    if audio is not None:
        clip = Audio.of(audio)
        json_fields = {
            "metadata": dict(metadata or {}),
            "webhook": hook,
            "options": options,
            "columns": columns,
            "parameters": parameters,
        }
        body = clip.path if clip.data is None and clip.path is not None else clip.read()
        fields, files = _http.multipart_upload(analysis, body, clip.filename or "audio", json_fields)
        return Call("POST", "/v1/jobs", data=fields, files=files, headers=headers)
    if columns or parameters:
        raise ValueError("columns= and parameters= describe a call-record file: use submit_file")
    body: dict[str, Any] = {"analysis": analysis, "input": {"text": text}}
    if metadata:
        body["metadata"] = dict(metadata)
    if hook:
        body["webhook"] = hook
    if options:
        body["options"] = dict(options)
    return Call("POST", "/v1/jobs", json=body, headers=headers)


def list_call(status: str | None, analysis: str | None, limit: int, cursor: str | None) -> Call:
    params: dict[str, Any] = {"limit": limit}
    for name, value in (("status", status), ("analysis", analysis), ("cursor", cursor)):
        if value:
            params[name] = value
    return Call("GET", "/v1/jobs", params=params)


def page(payload: dict[str, Any]) -> JobPage:
    return JobPage([Job.from_dict(j) for j in payload["data"]], payload.get("next_cursor"))


class Client:
    """A tenant's view of one Assay deployment.

    `timeout` bounds each request (long-polls get their wait on top). `retry` governs 429/503 and
    connection failures; `on_retry` is told before each retry sleep (the CLI shows it).
    """

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
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self.on_retry = on_retry
        self.long_poll = long_poll
        self._wait_limit: float | None = None  # the server's longest ?wait, once a refusal named it
        self._timeout = httpx.Timeout(timeout)
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=_headers(api_key, headers),
            timeout=self._timeout,
            transport=transport,
            follow_redirects=False,
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- sending ---------------------------------------------------------------------------------

    def _send(self, call: Call) -> httpx.Response:
        started = time.monotonic()
        attempts = 0
        while True:
            attempts += 1
            response: httpx.Response | None = None
            try:
                with call.opened_files() as files:
                    options = call.request_options(files, self._timeout)
                    response = self._http.request(call.method, call.path, **options)
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
            time.sleep(delay)

    def _call(self, call: Call) -> Any:
        return decode(self._send(call))

    # -- jobs ------------------------------------------------------------------------------------

    def submit(
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
        """One job. Give `idempotency_key` to make a repeat of this call (another process, tomorrow) safe;
        `options` as the API takes them, e.g. {"cache": False} or {"return_diagnostics": True}."""
        call = job_call(analysis, text, audio, metadata, webhook, idempotency_key, options=options)
        return Job.from_dict(self._call(call))

    def submit_file(
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
        """One job from a file sent as a multipart upload (audio, or call records for `cdr_fraud`), and whether
        it was created (False: the Idempotency-Key was used before, and this is the job it made then).

        Call records: `columns` maps the file's names ({"caller": "a_number", ...}), `parameters` override
        the thresholds; audio: `options` as for `submit`."""
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
        response = self._send(call)
        return Job.from_dict(decode(response)), response.status_code == 202

    def submit_many(
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
        """Many jobs through POST /v1/jobs/batch, in input order. Items: str (text), bytes/Path/Audio, JobRequest.

        Each chunk carries its own Idempotency-Key (see `plan_chunks` for `keys`, `idempotency_key`, `salt`),
        so a chunk retried after a lost answer returns the jobs it created rather than new ones.
        """
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
                response = self._send(
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

    def get(self, job_id: str, *, wait: float = 0) -> Job:
        """The job; with `wait`, the server answers as soon as it is final or after `wait` seconds (at most
        the server's own limit: a refusal naming it lowers `long_poll` and later waits to it, and the call
        is made again)."""
        if wait and self._wait_limit is not None:
            wait = min(wait, self._wait_limit)
        params = {"wait": _seconds(wait)} if wait else None
        try:
            return Job.from_dict(self._call(Call("GET", job_path(job_id), params=params, wait=wait)))
        except AssayError as exc:
            if (limit := wait_limit(exc, wait)) is None:
                raise
        self._wait_limit = self.long_poll = limit
        return self.get(job_id, wait=limit)

    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """Block until the job is final (long-polling), or raise WaitTimeout after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            asked = self.long_poll if remaining is None else max(0.0, min(self.long_poll, remaining))
            began = time.monotonic()
            job = self.get(job_id, wait=asked)
            if job.is_final:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"job {job_id} is still {job.status} after {timeout}s", job=job, pending=[job_id])
            _pause_if_not_held(began, asked)

    def iter_results(
        self, jobs: Iterable[Job | str], *, timeout: float | None = None, concurrency: int = 8
    ) -> Iterator[Job]:
        """Each job once it is final, in the order they finish (not the order given)."""
        watcher = self.watcher(timeout=timeout, concurrency=concurrency)
        watcher.add(jobs)
        watcher.close()
        yield from watcher

    def wait_many(self, jobs: Iterable[Job | str], *, timeout: float | None = None, concurrency: int = 8) -> list[Job]:
        """Every job, final, in the order given."""
        given = list(jobs)
        order = [j if isinstance(j, str) else j.id for j in given]
        done = {job.id: job for job in self.iter_results(given, timeout=timeout, concurrency=concurrency)}
        return [done[job_id] for job_id in order]

    def watcher(self, *, timeout: float | None = None, concurrency: int = 8) -> JobWatcher:
        """A JobWatcher on this client: for callers that add jobs while earlier ones finish (the CLI does)."""
        return JobWatcher(
            lambda job_id, wait: self.get(job_id, wait=wait),
            concurrency=concurrency,
            long_poll=self.long_poll,
            timeout=timeout,
        )

    def cancel(self, job_id: str) -> CancelResult:
        """Queued: it will never run. Running: marked canceled, its result discarded. Final: NotCancelable."""
        payload = self._call(Call("POST", job_path(job_id, "/cancel")))
        return CancelResult(Job.from_dict(payload["job"]), payload["cancellation"])

    def delete(self, job_id: str) -> Job:
        """Erase input, result and metadata; the bare record remains: GET then raises `Gone` (410) carrying it."""
        return Job.from_dict(self._call(Call("DELETE", job_path(job_id))))

    def webhook_attempts(self, job_id: str) -> list[WebhookEvent]:
        """The job's webhook events, each with every delivery attempt."""
        payload = self._call(Call("GET", job_path(job_id, "/webhooks")))
        return [WebhookEvent.from_dict(e) for e in payload["data"]]

    def list_page(
        self, *, status: str | None = None, analysis: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> JobPage:
        return page(self._call(list_call(status, analysis, limit, cursor)))

    def list_jobs(
        self,
        *,
        status: str | None = None,
        analysis: str | None = None,
        page_size: int = 100,
        limit: int | None = None,
    ) -> Iterator[Job]:
        """Newest first, following cursors page by page; stops after `limit` jobs if given."""
        cursor: str | None = None
        count = 0
        while True:
            size = page_size if limit is None else min(page_size, limit - count)
            if size <= 0:
                return
            current = self.list_page(status=status, analysis=analysis, limit=size, cursor=cursor)
            for job in current.jobs:
                yield job
                count += 1
            if not current.next_cursor:
                return
            cursor = current.next_cursor

    # -- catalog and webhooks --------------------------------------------------------------------

    def analyses(self) -> list[Analysis]:
        return [Analysis.from_dict(a) for a in self._call(Call("GET", "/v1/analyses"))["data"]]

    def webhook_secret(self) -> dict[str, Any]:
        return self._call(Call("GET", "/v1/webhooks/secret"))

    def redeliver(self, event_id: str) -> dict[str, Any]:
        return self._call(Call("POST", f"/v1/webhooks/{quote(event_id, safe='')}/redeliver"))


def _seconds(value: float) -> str:
    return f"{value:g}" if value != int(value) else str(int(value))


def _pause_if_not_held(began: float, asked: float) -> None:
    """A server that ignored ?wait would turn wait() into a busy loop; never ask more than twice a second."""
    spent = time.monotonic() - began
    if asked > 1 and spent < 0.5:
        time.sleep(0.5 - spent)
