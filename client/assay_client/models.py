"""Typed views of the API's JSON objects (jobs, analyses, webhook attempts).

Each keeps the document it came from in `raw`, so a field the server adds later is never lost
(the CLI prints `raw`); the typed fields are for code that reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

JobStatus = Literal["queued", "running", "succeeded", "failed", "canceled"]
FINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "canceled"})


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


@dataclass(frozen=True)
class JobError:
    code: str
    message: str | None

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> JobError | None:
        return cls(code=data["code"], message=data.get("message")) if data else None


@dataclass(frozen=True)
class Job:
    id: str
    analysis: str
    status: JobStatus
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    result: dict[str, Any] | None
    error: JobError | None
    metadata: dict[str, Any]
    attempts: int
    erased_at: datetime | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Job:
        created = _when(data["created_at"])
        assert created is not None
        return cls(
            id=data["id"],
            analysis=data["analysis"],
            status=data["status"],
            created_at=created,
            started_at=_when(data.get("started_at")),
            completed_at=_when(data.get("completed_at")),
            result=data.get("result"),
            error=JobError.from_dict(data.get("error")),
            metadata=data.get("metadata") or {},
            attempts=data.get("attempts", 0),
            erased_at=_when(data.get("erased_at")),
            raw=data,
        )

    @property
    def is_final(self) -> bool:
        """Succeeded, failed or canceled: the job will not change again (except by DELETE)."""
        return self.status in FINAL_STATUSES

    def to_dict(self) -> dict[str, Any]:
        return dict(self.raw)


@dataclass(frozen=True)
class JobPage:
    jobs: list[Job]
    next_cursor: str | None


@dataclass(frozen=True)
class CancelResult:
    job: Job
    cancellation: Literal["immediate", "best_effort", "not_cancelable"]


@dataclass(frozen=True)
class Analysis:
    name: str
    description: str
    input: Literal["text", "audio", "cdr"]
    model: str
    labels: list[str]
    limits: dict[str, float]
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Analysis:
        return cls(
            name=data["name"],
            description=data.get("description", ""),
            input=data["input"],
            model=data.get("model", ""),
            labels=list(data.get("labels") or []),
            limits=dict(data.get("limits") or {}),
            raw=data,
        )


@dataclass(frozen=True)
class WebhookAttempt:
    attempt: int
    url: str
    status_code: int | None
    latency_ms: int | None
    error: str | None
    next_attempt_at: datetime | None
    created_at: datetime | None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WebhookAttempt:
        return cls(
            attempt=data["attempt"],
            url=data["url"],
            status_code=data.get("status_code"),
            latency_ms=data.get("latency_ms"),
            error=data.get("error"),
            next_attempt_at=_when(data.get("next_attempt_at")),
            created_at=_when(data.get("created_at")),
        )


@dataclass(frozen=True)
class WebhookEvent:
    """One event of a job (job.started, job.succeeded, ...) and every delivery attempt made for it."""

    id: str
    type: str
    url: str
    status: str
    attempts: list[WebhookAttempt]
    created_at: datetime | None
    delivered_at: datetime | None
    next_attempt_at: datetime | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WebhookEvent:
        return cls(
            id=data["id"],
            type=data["type"],
            url=data["url"],
            status=data["status"],
            attempts=[WebhookAttempt.from_dict(a) for a in data.get("attempts") or []],
            created_at=_when(data.get("created_at")),
            delivered_at=_when(data.get("delivered_at")),
            next_attempt_at=_when(data.get("next_attempt_at")),
            raw=data,
        )
