"""SQLAlchemy 2.x table definitions; the Alembic migrations are written to match them."""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB


class JobStatus(StrEnum):
    """A job's states: `queued → running → succeeded | failed`, or `canceled` from queued or running."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


class EventStatus(StrEnum):
    """A webhook event's delivery states; delivered, failed and stopped are final."""

    PENDING = "pending"
    DELIVERING = "delivering"
    DELIVERED = "delivered"
    FAILED = "failed"
    STOPPED = "stopped"


JOB_STATUSES = tuple(JobStatus)
FINAL_STATUSES = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED)
LIVE_STATUSES = (JobStatus.QUEUED, JobStatus.RUNNING)
WEBHOOK_EVENT_STATUSES = tuple(EventStatus)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

tenants = Table(
    "tenants",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# Standard Webhooks signing secrets (`whsec_…`), encrypted (store.secrets_box). A tenant's current one
# has no `expires_at`; a rotation gives the old one an expiry, and until then it signs beside the new
# one, so receivers switch without dropping an event. Created on first use.
webhook_secrets = Table(
    "webhook_secrets",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("tenant_id", String(40), ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("encrypted", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("expires_at", DateTime(timezone=True)),
    Index("uq_webhook_secrets_current", "tenant_id", unique=True, postgresql_where=text("expires_at IS NULL")),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("tenant_id", String(40), ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False, index=True),
    # sha256 of the whole key: keys are 190-bit random strings, so a fast hash is enough
    # (the same choice GitHub and Stripe make for their tokens) and lookups stay O(1).
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),
    Column("label", String(200), nullable=False, server_default=""),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("revoked_at", DateTime(timezone=True)),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("owner", String(40), ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    Column("analysis", String(64), nullable=False),
    Column("status", String(16), nullable=False, server_default="queued"),
    Column("input", JSONB),
    Column("result", JSONB),
    Column("error_code", String(64)),
    Column("error_message", Text),
    Column("metadata", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("idempotency_key", String(255)),
    Column("request_hash", String(64)),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("lease_expires_at", DateTime(timezone=True)),
    Column("enqueued_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("started_at", DateTime(timezone=True)),
    Column("completed_at", DateTime(timezone=True)),
    Column("erased_at", DateTime(timezone=True)),
    # {"url": ..., "events": ["started", "completed"]}; SQL NULL (not JSON null) when absent
    Column("webhook", JSONB(none_as_null=True)),
    # The broker epoch (broker.publish) the job's message went out under; NULL: none is in the broker.
    Column("publish_epoch", String(32)),
    # --- result cache and coalescing (docs/DESIGN.md "Result cache") ---
    # {"return_embedding": bool, "return_diagnostics": bool}; SQL NULL when none was asked for
    Column("options", JSONB(none_as_null=True)),
    # What the result depends on, hashed (app.result_cache.cache_key); NULL: the job opted out or never runs.
    Column("cache_key", String(64)),
    # The live job this one is attached to: it never runs, it finishes with its source (store.result_cache).
    Column("coalesced_into", String(40)),
    CheckConstraint(f"status IN {tuple(str(s) for s in JOB_STATUSES)!r}", name="status_known"),
    # Listing: newest first per owner, keyset on (created_at, id).
    Index("ix_jobs_owner_created", "owner", text("created_at DESC"), text("id DESC")),
    Index("ix_jobs_owner_status_created", "owner", "status", text("created_at DESC"), text("id DESC")),
    Index(
        "uq_jobs_owner_idempotency_key",
        "owner",
        "idempotency_key",
        unique=True,
        postgresql_where=text("idempotency_key IS NOT NULL"),
    ),
    # The sweeper's two scans stay small: only live rows are indexed.
    Index("ix_jobs_queued_enqueued", "enqueued_at", postgresql_where=text("status = 'queued'")),
    Index("ix_jobs_running_lease", "lease_expires_at", postgresql_where=text("status = 'running'")),
    Index(
        "ix_jobs_live_cache_key",
        "cache_key",
        postgresql_where=text("status IN ('queued', 'running') AND coalesced_into IS NULL"),
    ),
    Index("ix_jobs_coalesced_into", "coalesced_into", postgresql_where=text("coalesced_into IS NOT NULL")),
    Index(
        "ix_jobs_retention",
        "completed_at",
        postgresql_where=text("erased_at IS NULL AND status IN ('succeeded', 'failed', 'canceled')"),
    ),
)

# Uploaded audio. Kept in PostgreSQL, beside its job: written in the job's own transaction (so
# "commit, then publish" covers it), readable by any worker without a shared volume, and erased
# with the job. Bounded by ASSAY_MAX_AUDIO_BYTES.
job_blobs = Table(
    "job_blobs",
    metadata,
    Column("job_id", String(40), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("content_type", String(100), nullable=False),
    Column("data", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# The outbox: at most one event per (job, type), created in the same transaction as the state
# change it reports; its id is the `webhook-id` header, the same on every retry.
webhook_events = Table(
    "webhook_events",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("job_id", String(40), ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    Column("owner", String(40), nullable=False),
    Column("type", String(32), nullable=False),
    Column("url", Text, nullable=False),
    Column("payload", JSONB, nullable=False),
    Column("status", String(16), nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", DateTime(timezone=True), server_default=func.now()),
    Column("locked_until", DateTime(timezone=True)),
    Column("last_error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("delivered_at", DateTime(timezone=True)),
    # As for jobs: the epoch of the message carrying this event's next attempt, and when it was sent.
    Column("publish_epoch", String(32)),
    Column("published_at", DateTime(timezone=True)),
    UniqueConstraint("job_id", "type", name="uq_webhook_events_job_id_type"),
    CheckConstraint(f"status IN {tuple(str(s) for s in WEBHOOK_EVENT_STATUSES)!r}", name="status"),
    Index("ix_webhook_events_due", "next_attempt_at", postgresql_where=text("status IN ('pending', 'delivering')")),
)

webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("event_id", String(40), ForeignKey("webhook_events.id", ondelete="CASCADE"), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("url", Text, nullable=False),
    Column("status_code", Integer),
    Column("latency_ms", Integer),
    Column("error", Text),
    Column("next_attempt_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_webhook_attempts_event_id", "event_id", "attempt"),
)

# Finished results by cache key, each pointing at the job that computed it: erasing (or purging) that
# job removes the entry. In PostgreSQL rather than Redis so that a hit, the job it completes and the
# source's erasure are each one transaction (docs/DESIGN.md "Result cache").
result_cache = Table(
    "result_cache",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("analysis", String(64), nullable=False),
    Column("source_job_id", String(40), ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("result", JSONB, nullable=False),
    Column("bytes", Integer, nullable=False),
    Column("started_at", DateTime(timezone=True)),
    Column("completed_at", DateTime(timezone=True), nullable=False, index=True),
)

# The columns the public job document is built from (contract.documents.job_document): the API
# reads them for responses, the outbox for webhook payloads.
JOB_DOCUMENT_COLUMNS = (
    jobs.c.id,
    jobs.c.owner,
    jobs.c.analysis,
    jobs.c.status,
    jobs.c.result,
    jobs.c.error_code,
    jobs.c.error_message,
    jobs.c.metadata,
    jobs.c.attempts,
    jobs.c.created_at,
    jobs.c.started_at,
    jobs.c.completed_at,
    jobs.c.erased_at,
)

# Per-tenant overrides of the rate limits and quotas in settings (app/ratelimits.py); a NULL column
# means "the setting's value". Issue 14.
tenant_limits = Table(
    "tenant_limits",
    metadata,
    Column("tenant_id", String(40), ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True),
    Column("rate_requests", Integer),
    Column("rate_requests_window_seconds", Integer),
    Column("rate_jobs_per_minute", Integer),
    Column("max_open_waits_per_key", Integer),
    Column("tenant_max_queued_jobs", Integer),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint(
        "coalesce(rate_requests, 1) >= 1 AND coalesce(rate_requests_window_seconds, 1) >= 1"
        " AND coalesce(rate_jobs_per_minute, 1) >= 1 AND coalesce(max_open_waits_per_key, 1) >= 1"
        " AND coalesce(tenant_max_queued_jobs, 1) >= 1",
        name="tenant_limits_positive",
    ),
)
