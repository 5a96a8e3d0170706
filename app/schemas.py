"""Request and response models (pydantic); also the source of the OpenAPI schemas."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

#: A week: past it, a rotation is a new secret that has not been rolled out, not a grace period.
MAX_SECRET_GRACE_SECONDS = 7 * 86_400
JobStatus = Literal["queued", "running", "succeeded", "failed", "canceled"]


class TextInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(description="the text to analyse; must not be blank")


class AudioInput(BaseModel):
    """Audio inside JSON (single or batch submission); multipart/form-data uploads need no base64."""

    model_config = ConfigDict(extra="forbid")
    audio_base64: str = Field(description="the audio file's bytes, base64-encoded (any format FFmpeg decodes)")
    filename: str | None = Field(None, max_length=255)


class CdrInput(BaseModel):
    """A call-record file inside JSON (single or batch submission); multipart uploads take larger files."""

    model_config = ConfigDict(extra="forbid")
    cdr_base64: str = Field(description="the file's bytes, base64: CSV with a header or JSON lines, optionally gzip")
    filename: str | None = Field(None, max_length=255)
    columns: dict[str, str] | None = Field(
        None, description='the file\'s names for caller, callee, start_time, duration, e.g. {"caller": "a_number"}'
    )


class WebhookSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(description="http(s) URL; must resolve to public addresses unless the deployment allows others")
    events: list[Literal["started", "completed"]] = Field(
        default_factory=lambda: ["completed"],
        min_length=1,
        description="started: job.started; completed: job.succeeded, job.failed or job.canceled",
    )


class JobOptions(BaseModel):
    """Per-request switches (issue 17): the cache, and what else a result carries. Strict: JSON booleans only."""

    model_config = ConfigDict(extra="forbid", strict=True)
    cache: bool = Field(True, description="false: neither served from the cache nor attached to an identical job")
    return_embedding: bool = Field(False, description="text analyses on the sentence encoder: add the embedding")
    return_diagnostics: bool = Field(False, description="add stage timings, batch size, tokens and versions")


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    analysis: str = Field(description="an analysis name from GET /v1/analyses", examples=["sentiment"])
    input: TextInput = Field(description="for text analyses; audio analyses take AudioInput")
    metadata: dict[str, Any] = Field(default_factory=dict, description="echoed back on the job; bounded in size")
    webhook: WebhookSpec | None = None
    options: JobOptions | None = None


class AudioJobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    analysis: str
    input: AudioInput
    metadata: dict[str, Any] = Field(default_factory=dict, description="echoed back on the job; bounded in size")
    webhook: WebhookSpec | None = None
    options: JobOptions | None = None


class CdrJobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    analysis: str
    input: CdrInput
    parameters: dict[str, Any] | None = Field(
        None, description="detection thresholds; defaults from the catalog (GET /v1/analyses)"
    )
    metadata: dict[str, Any] = Field(default_factory=dict, description="echoed back on the job; bounded in size")
    webhook: WebhookSpec | None = None


class BatchCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    jobs: list[dict[str, Any]] = Field(description="JobCreate objects; one invalid entry rejects the request")
    webhook: WebhookSpec | None = Field(None, description="for every job that sets none of its own")


class WebhookAttempt(BaseModel):
    attempt: int
    url: str
    status_code: int | None
    latency_ms: int | None
    error: str | None
    next_attempt_at: datetime | None
    created_at: datetime


class WebhookEvent(BaseModel):
    id: str = Field(description="the webhook-id header, the same on every retry")
    type: Literal["job.started", "job.succeeded", "job.failed", "job.canceled"]
    url: str
    status: Literal["pending", "delivering", "delivered", "failed", "stopped"]
    attempts: list[WebhookAttempt]
    created_at: datetime
    delivered_at: datetime | None
    next_attempt_at: datetime | None


class WebhookEventList(BaseModel):
    data: list[WebhookEvent]


class SecretRotation(BaseModel):
    """The body of POST /v1/webhooks/secret/rotate; no body, `{}` or no `grace_seconds`: the deployment's grace."""

    model_config = ConfigDict(extra="forbid", strict=True)
    grace_seconds: float | None = Field(
        None,
        ge=0,
        allow_inf_nan=False,
        le=MAX_SECRET_GRACE_SECONDS,
        description="how long the earlier secrets keep signing beside the new one; 0 after a leak",
    )


class WebhookSecret(BaseModel):
    secret: str = Field(description="whsec_…: verify with the standardwebhooks library")
    previous_secret_expires_at: datetime | None


class JobError(BaseModel):
    code: str
    message: str | None


class Job(BaseModel):
    id: str
    object: Literal["job"] = "job"
    analysis: str
    status: JobStatus
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    result: dict[str, Any] | None
    error: JobError | None
    metadata: dict[str, Any]
    attempts: int
    erased_at: datetime | None = Field(None, description="set once DELETE erased input, result and metadata")


class JobList(BaseModel):
    data: list[Job]
    next_cursor: str | None


class BatchCreated(BaseModel):
    data: list[Job]


class CancelResult(BaseModel):
    job: Job
    cancellation: Literal["immediate", "best_effort", "not_cancelable"] = Field(
        description="immediate: it was queued and will never run; best_effort: it was running, the model call "
        "was not interrupted but its result is discarded"
    )


class ErrorBody(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class Analysis(BaseModel):
    name: str
    description: str
    input: Literal["text", "audio", "cdr"]
    family: str
    queue: str
    engine: str
    model: str
    labels: list[str]
    flag_label: str | None
    verdicts: dict[str, float]
    pipeline: dict[str, list[str]] | None
    parameters: dict[str, int | float] | None = Field(None, description="call records: the parameters' defaults")
    limits: dict[str, float]


class AnalysisList(BaseModel):
    data: list[Analysis]


class Redelivery(BaseModel):
    id: str
    status: Literal["pending"]
    previous_status: Literal["pending", "delivered", "failed", "stopped"]


class Quota(BaseModel):
    queued_jobs: int = Field(description="jobs the tenant may have waiting for a worker")
    jobs_per_minute: int


class Stats(BaseModel):
    """GET /v1/stats: the tenant's jobs now and over the last minute, and each shared queue's depth."""

    queued: int
    running: int
    finished_last_minute: int
    failed_last_minute: int
    throughput_per_second: float
    queue_depth: dict[str, int] = Field(description="messages waiting in each model family's queue (all tenants)")
    quota: Quota
