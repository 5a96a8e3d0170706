"""What a job is made of on the way in: text or audio, metadata, webhook; and how a batch is cut.

Building request bodies here, apart from the HTTP code, keeps one definition for the sync and the
async client and makes the chunking testable without a server.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

AUDIO_EXTENSIONS = frozenset({".wav", ".mp3", ".m4a", ".ogg", ".opus", ".flac", ".webm"})


@dataclass(frozen=True)
class Webhook:
    """Where the API should POST the job's events; `events`: "started" and/or "completed"."""

    url: str
    events: tuple[str, ...] = ("completed",)

    def to_dict(self) -> dict[str, Any]:
        return {"url": self.url, "events": list(self.events)}


WebhookLike = str | Webhook | Mapping[str, Any]


def webhook_dict(webhook: WebhookLike | None) -> dict[str, Any] | None:
    if webhook is None:
        return None
    if isinstance(webhook, str):
        return Webhook(webhook).to_dict()
    if isinstance(webhook, Webhook):
        return webhook.to_dict()
    return dict(webhook)


@dataclass(frozen=True)
class Audio:
    """Audio to analyse: bytes in memory, or a file read only when its chunk is sent."""

    data: bytes | None = None
    path: Path | None = None
    filename: str | None = None

    @classmethod
    def of(cls, value: bytes | str | Path | Audio, filename: str | None = None) -> Audio:
        if isinstance(value, Audio):
            return value
        if isinstance(value, bytes | bytearray):
            return cls(data=bytes(value), filename=filename)
        path = Path(value)
        return cls(path=path, filename=filename or path.name)

    def read(self) -> bytes:
        if self.data is not None:
            return self.data
        assert self.path is not None
        return self.path.read_bytes()

    def size(self) -> int:
        """Bytes, without reading a file: chunking decides before anything is loaded."""
        if self.data is not None:
            return len(self.data)
        assert self.path is not None
        return self.path.stat().st_size


@dataclass(frozen=True)
class JobRequest:
    """One job of a batch. `analysis`/`metadata` left out take the batch's; `metadata` here is merged over it."""

    text: str | None = None
    audio: Audio | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    analysis: str | None = None

    def __post_init__(self) -> None:
        if (self.text is None) == (self.audio is None):
            raise ValueError("a job needs exactly one of text or audio")

    def estimated_bytes(self) -> int:
        """Roughly its size in the JSON body (base64 is 4/3 of the audio), to keep chunks under the body limit."""
        if self.audio is not None:
            return self.audio.size() * 4 // 3 + 200
        assert self.text is not None
        return len(self.text.encode()) + 100

    def entry(
        self, analysis: str, metadata: Mapping[str, Any] | None = None, options: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The JSON object the batch endpoint takes for this job (`options`: the API's job options)."""
        if self.audio is not None:
            audio = self.audio
            payload: dict[str, Any] = {"audio_base64": base64.b64encode(audio.read()).decode("ascii")}
            if audio.filename:
                payload["filename"] = audio.filename
        else:
            payload = {"text": self.text}
        body: dict[str, Any] = {"analysis": self.analysis or analysis, "input": payload}
        merged = {**(metadata or {}), **self.metadata}
        if merged:
            body["metadata"] = merged
        if options:
            body["options"] = dict(options)
        return body


ItemLike = str | bytes | Path | Audio | JobRequest


def as_request(item: ItemLike) -> JobRequest:
    """str → text; bytes, Path or Audio → audio; JobRequest as is."""
    if isinstance(item, JobRequest):
        return item
    if isinstance(item, str):
        return JobRequest(text=item)
    if isinstance(item, bytes | bytearray | Path | Audio):
        return JobRequest(audio=Audio.of(item))
    raise TypeError(f"cannot make a job of {type(item).__name__}: give str (text), bytes/Path/Audio or JobRequest")


def chunks(requests: Iterable[JobRequest], max_jobs: int, max_bytes: int) -> Iterator[list[JobRequest]]:
    """Consecutive runs of at most `max_jobs` requests and about `max_bytes` (a larger single job goes alone).

    Deterministic for the same input, so content-derived chunk keys come out the same on a re-run.
    """
    if max_jobs < 1:
        raise ValueError("max_jobs must be at least 1")
    current: list[JobRequest] = []
    size = 0
    for request in requests:
        need = request.estimated_bytes()
        if current and (len(current) >= max_jobs or size + need > max_bytes):
            yield current
            current, size = [], 0
        current.append(request)
        size += need
    if current:
        yield current
