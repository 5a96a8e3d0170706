"""Python client for the Assay content-analysis API.

Example::

    from assay_client import Client
    with Client("http://127.0.0.1:8000", "assay_...") as assay:
        job = assay.wait(assay.submit("sentiment", "I love this product").id, timeout=30)
        print(job.result["label"])
"""

from assay_client._http import RetryEvent
from assay_client.aio import AsyncClient
from assay_client.batching import Chunk, ChunkResult
from assay_client.client import Client
from assay_client.errors import (
    APIConnectionError,
    AssayError,
    BadRequest,
    Conflict,
    Gone,
    IdempotencyKeyReused,
    NotCancelable,
    NotFound,
    PayloadTooLarge,
    QueueFull,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
    WaitTimeout,
)
from assay_client.inputs import AUDIO_EXTENSIONS, Audio, JobRequest, Webhook
from assay_client.models import (
    FINAL_STATUSES,
    Analysis,
    CancelResult,
    Job,
    JobError,
    JobPage,
    WebhookAttempt,
    WebhookEvent,
)
from assay_client.retry import RetryPolicy, parse_retry_after

__version__ = "0.1.0"

__all__ = [
    "AUDIO_EXTENSIONS",
    "FINAL_STATUSES",
    "APIConnectionError",
    "Analysis",
    "AssayError",
    "AsyncClient",
    "Audio",
    "BadRequest",
    "CancelResult",
    "Chunk",
    "ChunkResult",
    "Client",
    "Conflict",
    "Gone",
    "IdempotencyKeyReused",
    "Job",
    "JobError",
    "JobPage",
    "JobRequest",
    "NotCancelable",
    "NotFound",
    "PayloadTooLarge",
    "QueueFull",
    "RateLimited",
    "RetryEvent",
    "RetryPolicy",
    "ServerError",
    "ServiceUnavailable",
    "Unauthorized",
    "UnsupportedMediaType",
    "ValidationFailed",
    "WaitTimeout",
    "Webhook",
    "WebhookAttempt",
    "WebhookEvent",
    "parse_retry_after",
]
