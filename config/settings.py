"""One typed settings object built from the environment.

Every module takes its configuration from a `Settings` instance; nothing else reads
`os.environ`. Variables carry the `ASSAY_` prefix, except the two that every tool in this
stack already knows by name: `DATABASE_URL` and `REDIS_URL`.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import pydantic_settings
from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from config.engines import MODEL_ENGINE_NAMES
from config.production import production_problems

ROOT = Path(__file__).resolve().parent.parent


class SettingsError(RuntimeError):
    """Raised at start-up when the environment holds a value Assay cannot use."""


class Settings(BaseSettings):
    """Assay's configuration; defaults work on a developer's machine."""

    model_config = SettingsConfigDict(env_prefix="ASSAY_", extra="ignore", frozen=True)

    # --- services -------------------------------------------------------------------
    database_url: str = Field(
        "postgresql+psycopg2://postgres@127.0.0.1:5432/assay",
        validation_alias=AliasChoices("DATABASE_URL", "ASSAY_DATABASE_URL"),
        description="PostgreSQL, the source of truth (make run starts one where none answers)",
    )
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("REDIS_URL", "ASSAY_REDIS_URL"),
        description="the broker, job-finished notifications, rate limits and event streams (redis://, rediss://, unix://)",
    )
    db_pool_size: int = Field(16, ge=1, le=200, description="per API process (gevent: one per in-flight request)")
    db_pool_pre_ping: bool = Field(True, description="test each pooled connection before use (a round trip)")
    db_statement_timeout_ms: int = Field(
        15_000,
        ge=100,
        description="PostgreSQL cancels a statement running longer, and ends a session idle this long in a transaction",
    )
    db_outage_patience_seconds: float = Field(
        120.0, ge=0, description="a worker retries PostgreSQL this long before giving a batch up"
    )
    redis_timeout_seconds: float = Field(2.0, gt=0, description="every Redis read or write")
    redis_connect_timeout_seconds: float = Field(1.0, gt=0, description="opening a Redis connection")

    # --- queues -----------------------------------------------------------------------
    queue_prefix: str = Field(
        "assay",
        pattern=r"^[a-z][a-z0-9_.-]*$",
        description="queues are <prefix>.<family> (assay.text); Redis keys start with it",
    )
    max_queue_depth: int = Field(100_000, ge=1, description="back-pressure: 503 above this many messages")
    max_queue_wait_seconds: float = Field(
        60.0,
        gt=0,
        description="back-pressure: 503 once a family's queued jobs need longer than this at its workers' pace",
    )
    publish_chunk_size: int = Field(
        64, ge=1, le=10_000, description="job ids per broker message from the batch endpoint"
    )

    # --- batching (worker) --------------------------------------------------------------
    max_batch_size: int = Field(32, ge=1, le=4096, description="jobs per model call, and messages per flush")
    max_batch_wait_ms: int = Field(
        50, ge=1, le=60_000, description="longest a job waits for its batch to fill (an idle queue runs at once)"
    )
    worker_prefetch_batches: int = Field(
        2, ge=1, le=64, description="batches' worth of messages a worker holds ahead (prefetch = this × batch size)"
    )

    # --- leases, recovery ---------------------------------------------------------------
    lease_seconds: int = Field(300, ge=1, description="renewed every third of it while the worker runs the job")
    max_run_seconds: float = Field(
        3600.0, gt=0, description="a worker stops renewing a job's lease after this; the sweeper then takes it"
    )
    requeue_after_seconds: int = Field(
        120,
        ge=1,
        description="a queued job whose message is in no queue and held by no worker for this long is re-sent",
    )
    max_attempts: int = Field(3, ge=1, le=100, description="starts of a job before it fails with attempts_exhausted")
    transient_retry_seconds: int = Field(
        30,
        ge=1,
        description="a job whose run hit a transient error (memory, disk full) runs again after about this long",
    )
    sweep_interval_seconds: float = Field(15.0, gt=0, description="how often the sweeper looks for lost and stuck jobs")
    sweep_limit: int = Field(5_000, ge=1, description="jobs one sweep re-publishes or fails, at most")
    retention_days: float = Field(30.0, ge=0, description="erase finished jobs this old; 0 keeps them forever")
    retention_interval_seconds: float = Field(3_600.0, gt=0, description="how often retention runs")
    retention_chunk: int = Field(
        5_000, ge=1, description="jobs erased per transaction (retention repeats until none is due)"
    )
    visibility_timeout_seconds: int = Field(
        7_200, ge=10, description="Redis redelivers an unacknowledged message after this; must exceed lease + requeue"
    )
    # How often kombu scans for unacknowledged messages older than the visibility timeout
    # (a killed worker's), roughly interval x throttle seconds in a worker's event loop.
    broker_restore_interval_seconds: int = Field(
        10, ge=1, description="how often a worker scans for a dead worker's unacknowledged messages"
    )
    broker_restore_throttle: int = Field(10, ge=1, description="that scan runs at most every interval × this seconds")

    # --- input limits -------------------------------------------------------------------
    max_text_chars: int = Field(20_000, ge=1, description="characters per text; longer is 413 input_too_large")
    max_metadata_bytes: int = Field(16_384, ge=2, description="a job's metadata as UTF-8 JSON; larger is 413")
    max_jobs_per_batch: int = Field(1_000, ge=1, description="entries of one POST /v1/jobs/batch; more is 413")
    group_commit_max: int = Field(
        64, ge=0, description="single text submissions written together per API process (app/group_commit.py); 0: off"
    )
    max_request_bytes: int = Field(40 * 1024 * 1024, ge=1024, description="fits base64 audio at the audio limit")
    max_wait_seconds: int = Field(30, ge=0, le=300, description="the longest GET /v1/jobs/{id}?wait= a client may ask")
    list_max_limit: int = Field(200, ge=1, description="the largest ?limit= of GET /v1/jobs")

    # --- models -------------------------------------------------------------------------
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA where a GPU is visible")
    gpus: str = Field(
        "", pattern=r"^[0-9, ]*$", description="GPU indices for the launcher; empty: all nvidia-smi lists"
    )
    torch_threads: int = Field(
        0,
        ge=0,
        description="0: one per core this process may use, capped by its cgroup CPU quota (a container CPU limit)",
    )
    text_model_path: str = Field("", description="embedding model dir or HF id; empty: the packaged MiniLM")
    max_model_tokens: int = Field(
        256, ge=8, le=8192, description="tokens a text model reads; longer texts are cut and flagged truncated"
    )
    analysis_models: dict[str, str] = Field(
        default_factory=dict, description='JSON {"analysis": "engine:source"}, e.g. {"sentiment": "hf-classifier:/m"}'
    )
    allow_model_download: bool = Field(False, description="let transformers fetch model ids from the hub")
    speech_model_path: str = Field(
        "",
        description="CTranslate2 Whisper dir or id, or a packaged name (whisper-base, whisper-tiny.en); "
        "empty: the packaged whisper-base",
    )
    speech_compute_type: str = Field("default", description="int8 on CPU, float16 on CUDA by default")
    speech_beam_size: int = Field(
        5, ge=1, le=10, description="5: WER 15.5 % against 19.4 % greedy on bench/wer.py, for ~12 % CPU throughput"
    )
    max_audio_bytes: int = Field(
        25 * 1024 * 1024, ge=1024, description="an audio upload; larger is 413 audio_too_large"
    )
    max_audio_seconds: float = Field(600.0, gt=0, description="audio longer than this is refused (413)")
    audio_probe_seconds: float = Field(
        0.8, gt=0, le=10, description="an upload whose length cannot be read this fast is refused (422)"
    )
    warmup: bool = Field(True, description="a worker runs each model once before it takes jobs")

    # --- call records (cdr_fraud, issue 13) ----------------------------------------------
    # CDR files are far larger than audio: they are streamed to a spool folder shared by the API and the
    # tabular workers (a volume both mount), never held in memory or in PostgreSQL; the job row records
    # the file's name, size and sha256. See docs/DESIGN.md "Call records".
    upload_dir: Path | None = Field(None, description="spool folder for CDR files; empty: <var_dir>/uploads")
    max_cdr_bytes: int = Field(2 * 1024**3, ge=1024, description="a CDR file as uploaded (compressed or not)")
    max_cdr_line_bytes: int = Field(65_536, ge=256, description="one CSV or JSON line; longer → invalid_input")
    max_cdr_inflated_bytes: int = Field(
        16 * 1024**3,
        ge=1024,
        description="a gzip CDR file inflated; larger fails its job with input_too_large (a gzip bomb)",
    )
    cdr_memory_limit_mb: int = Field(
        512, ge=64, description="DuckDB's buffer memory in a tabular worker; past it, it spills to disk"
    )
    cdr_threads: int = Field(0, ge=0, description="DuckDB threads per tabular worker; 0: one per core")
    cdr_max_flagged: int = Field(1_000, ge=1, description="flagged callers listed in a result (totals count all)")
    upload_grace_seconds: float = Field(
        900.0, gt=0, description="a spooled file no live job names is deleted after this long"
    )
    # --- end call records ---------------------------------------------------------------

    # --- API ----------------------------------------------------------------------------
    api_bind: str = Field("127.0.0.1:8000", description="where gunicorn listens (host:port)")
    api_workers: int = Field(2, ge=1, le=64, description="gunicorn worker processes (gevent)")
    api_worker_connections: int = Field(1000, ge=1, description="concurrent connections per API worker")
    api_read_timeout_seconds: float = Field(
        60.0,
        gt=0,
        description="a client that sends nothing of its request body this long is answered 408 and disconnected "
        "(at least gunicorn's keepalive + 1: 6)",
    )
    auth_cache_seconds: float = Field(
        10.0, ge=0, description="an API key's lookup is cached this long: a revoked key works until it passes"
    )

    worker_metrics_port: int = Field(9100, ge=0, le=65535, description="a worker's /metrics port; 0: off")
    worker_metrics_address: str = Field(
        "0.0.0.0", description="the address a worker's /metrics listens on (make run: loopback, like the API)"
    )
    worker_families: list[str] = Field(
        default_factory=lambda: ["text", "audio"], description="model families (queues) an inference worker serves"
    )

    # --- webhooks -------------------------------------------------------------------------------
    webhook_timeout_seconds: float = Field(15.0, gt=0, le=120, description="one delivery attempt, whole")
    webhook_schedule_seconds: list[float] = Field(
        default_factory=lambda: [5, 300, 1800, 7200, 18000, 36000, 36000],
        description="delay before each retry after the first try (JSON list); then the event fails",
    )
    webhook_jitter: float = Field(0.1, ge=0, le=1, description="± fraction of each delay")
    webhook_allow_private: bool = Field(False, description="let webhooks reach loopback/private addresses (dev, tests)")
    webhook_secret_grace_seconds: float = Field(86_400, ge=0, description="old secret keeps signing after rotation")
    webhook_sweep_interval_seconds: float = Field(5.0, gt=0, description="how often due retries are published")
    webhook_max_retry_after_seconds: float = Field(
        86_400, gt=0, description="a receiver's Retry-After is honoured up to this"
    )
    webhook_publish_grace_seconds: float = Field(
        60.0, gt=0, description="a published delivery in no queue and held by no worker for this long is re-sent"
    )
    webhook_concurrency: int = Field(100, ge=1, le=2000, description="HTTP attempts in flight per webhook worker")
    webhook_batches_in_flight: int = Field(8, ge=1, le=200, description="event batches a webhook worker runs at once")
    webhook_per_host_limit: int = Field(
        16, ge=1, le=1000, description="attempts in flight to one receiver (host:port); the rest wait their turn"
    )
    webhook_publish_chunk_size: int = Field(50, ge=1, le=1000, description="webhook events per broker message")
    webhook_max_response_bytes: int = Field(65_536, ge=0, description="read of a receiver's answer, at most")
    webhook_circuit_failures: int = Field(
        10, ge=1, description="consecutive failures that pause a receiver (its events wait their schedule)"
    )
    webhook_circuit_open_seconds: float = Field(
        30.0, gt=0, description="how long a paused receiver stays paused before one attempt tries it"
    )
    secrets_keys: SecretStr = Field(
        SecretStr(""), description="Fernet keys, newest first, comma separated: encrypt webhook secrets at rest"
    )
    max_webhook_url_chars: int = Field(2048, ge=16, description="a webhook URL; longer is 422")

    # --- rate limits, quotas, event stream (issue 14: app/ratelimits.py, app/events_api.py) ----------
    # Per API key unless said otherwise; every figure can be overridden per tenant in the tenant_limits table.
    # Defaults are generous (a single team's bulk client is not throttled below what one box serves); a deployment
    # shared by many tenants lowers them, globally or per tenant.
    rate_limits_enabled: bool = Field(True, description="off: no rate limits, open-wait caps or tenant quotas")
    rate_requests: int = Field(1_000, ge=1, description="requests per API key per rate_requests_window_seconds")
    rate_requests_window_seconds: int = Field(1, ge=1, le=3600, description="the window of rate_requests")
    rate_jobs_per_minute: int = Field(120_000, ge=1, description="jobs per API key per minute; batch entries count")
    max_open_waits_per_key: int = Field(1_000, ge=1, description="open ?wait long-polls plus event streams per key")
    tenant_max_queued_jobs: int = Field(100_000, ge=1, description="a tenant's queued jobs; 429 for it alone past this")
    tenant_limits_cache_seconds: float = Field(5.0, ge=0, description="per-tenant overrides are re-read this often")
    max_streams_per_process: int = Field(800, ge=1, description="open GET /v1/events per API process; 503 past it")
    events_window: int = Field(10_000, ge=10, description="job events kept per tenant for Last-Event-ID resumption")
    events_keep_seconds: int = Field(86_400, ge=60, description="a tenant's event log expires this long after its last")
    events_heartbeat_seconds: float = Field(15.0, gt=0, description="a comment line this often keeps proxies open")
    events_max_stream_seconds: float = Field(3_600.0, gt=0, description="a stream ends after this; clients resume")
    # --- end of issue 14 block --------------------------------------------------------------------------
    # --- result cache and coalescing (issue 17; docs/DESIGN.md "Result cache") ------------------
    cache_enabled: bool = Field(True, description="serve repeated inputs from finished results and coalesce in-flight")
    cache_ttl_seconds: float = Field(3_600.0, gt=0, description="a finished result is served this long")
    cache_max_entries: int = Field(100_000, ge=1, description="the oldest entries beyond this are dropped")
    cache_max_bytes: int = Field(256 * 1024 * 1024, ge=1024, description="results held, as JSON, at most")
    cache_shared_across_tenants: bool = Field(
        False,
        description="one cache for every tenant: a hit's speed would tell a tenant that another sent the same input",
    )
    cache_namespace: str = Field(
        "", max_length=64, description="part of every key: change it to retire every entry (a model swapped in place)"
    )
    max_result_bytes: int = Field(
        1_048_576, ge=1024, description="a result heavier than this as JSON fails its job (cdr_fraud lists ≤ 1,000)"
    )

    # --- Flower ---------------------------------------------------------------------------
    flower_port: int = Field(5555, ge=1, le=65535, description="Flower's port (make run, the compose file)")
    flower_address: str = Field("127.0.0.1", description="0.0.0.0 in a container")
    flower_user: str = Field("admin", description="Flower's basic auth user")
    flower_password: str = Field("assay-dev", description="Flower's basic auth password; production refuses a weak one")
    flower_task_events: bool = Field(
        True, description="per-job task events for Flower's task list (one message per batch); off saves broker work"
    )

    # --- operations (issue 16) ------------------------------------------------------------
    metrics_bind: str = Field(
        "",
        pattern=r"^(|(\[[0-9a-fA-F:]+\]|[^\s:\[\]]*):[0-9]{1,5})$",
        description="host:port of the API's own /metrics listener; empty: /metrics on the API port (not in production)",
    )

    # --- logging ----------------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="the least severe level logged")
    log_json: bool = Field(True, description="JSON lines (request_id, job_id bound); false: plain text")

    environment: Literal["development", "test", "production"] = Field(
        "development",
        description="production refuses weak Flower credentials, no secrets keys, /metrics on the API port",
    )
    # make run / make test only: "auto" uses configured or default servers when they answer and
    # starts private ones under var/ otherwise; "always" starts private ones regardless.
    local_services: Literal["auto", "always"] = Field(
        "auto", description="make run/test: auto starts private servers only where none answers; always: always"
    )
    # The private PostgreSQL flushes each commit to disk (an accepted job survives a crash of the machine);
    # `make test` turns this off, since its databases are thrown away and fsync only slows it down.
    local_postgres_fsync: bool = Field(True, description="the private PostgreSQL flushes each commit (make test: off)")
    var_dir: Path = Field(ROOT / "var", description="local state: uploads, metrics, dev keys, private servers")

    @field_validator("database_url")
    @classmethod
    def _postgres_only(cls, value: str) -> str:
        if not value.startswith(("postgresql://", "postgresql+psycopg2://", "postgres://")):
            raise ValueError("must be a postgresql:// URL")
        if value.startswith("postgres://"):
            value = "postgresql://" + value[len("postgres://") :]
        if value.startswith("postgresql://"):
            value = "postgresql+psycopg2://" + value[len("postgresql://") :]
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_only(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("analysis_models")
    @classmethod
    def _engine_source_pairs(cls, value: dict[str, str]) -> dict[str, str]:
        for analysis, choice in value.items():
            engine, sep, source = choice.partition(":")
            if not sep or not source or engine not in MODEL_ENGINE_NAMES:
                raise ValueError(
                    f"{analysis}: expected '<engine>:<model id or path>' with an engine from "
                    f"{', '.join(MODEL_ENGINE_NAMES)}, got {choice!r}"
                )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.visibility_timeout_seconds <= self.lease_seconds + self.requeue_after_seconds:
            raise ValueError(
                "visibility_timeout_seconds must exceed lease_seconds + requeue_after_seconds, "
                "or Redis redelivers messages of jobs that are still running"
            )
        if self.environment == "production":
            problems = production_problems(
                flower_user=self.flower_user,
                flower_password=self.flower_password,
                api_bind=self.api_bind,
                metrics_bind=self.metrics_bind,
                secrets_keys=self.secrets_keys.get_secret_value(),
            )
            if problems:
                raise ValueError("; ".join(problems))
        return self

    # --- derived --------------------------------------------------------------------------
    @property
    def database_url_plain(self) -> str:
        """The URL as libpq and psql read it (no SQLAlchemy driver suffix)."""
        return self.database_url.replace("postgresql+psycopg2://", "postgresql://", 1)

    def queue_name(self, family: str) -> str:
        """Broker queue of a model family, e.g. `assay.text`."""
        return f"{self.queue_prefix}.{family}"

    @property
    def secrets_key_list(self) -> list[str]:
        return [key.strip() for key in self.secrets_keys.get_secret_value().split(",") if key.strip()]

    @property
    def cdr_upload_dir(self) -> Path:
        """Where CDR files are spooled (shared by the API, the tabular workers and the maintenance worker)."""
        return self.upload_dir or self.var_dir / "uploads"

    @property
    def webhook_queue(self) -> str:
        return self.queue_name("webhooks")

    @property
    def maintenance_queue(self) -> str:
        return self.queue_name("maintenance")

    @property
    def prefetch_multiplier(self) -> int:
        """Messages a worker may hold: enough for celery-batches to fill whole batches."""
        return self.max_batch_size * self.worker_prefetch_batches


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment (and overrides), with one clear error on bad values."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(f"{_env_name(err['loc'])}: {err['msg']}" for err in exc.errors())
        raise SettingsError(f"invalid configuration: {problems}") from None
    except pydantic_settings.SettingsError as exc:  # a list or mapping variable that is not JSON
        field = re.search(r'field "([a-z_]+)"', str(exc))
        name = _env_name((field.group(1),)) if field else "a setting"
        raise SettingsError(f"invalid configuration: {name}: not valid JSON ({exc.__cause__ or exc})") from None


def _env_name(loc: tuple[object, ...]) -> str:
    """The environment variable a validation error is about, as the operator typed it."""
    field = str(loc[0]) if loc else ""
    if field.isupper():  # an alias, as found in the environment (DATABASE_URL, ASSAY_DATABASE_URL)
        return field
    if field in ("database_url", "redis_url"):
        return field.upper()
    return f"ASSAY_{field.upper()}" if field else "settings"


def run_command(main: Callable[..., int], *args: object) -> int:
    """A command's exit code. A configuration error (a bad value, a missing key) is its one-line message
    on stderr and exit 2: the operator's to fix, and under a traceback the message was easy to miss."""
    try:
        return main(*args)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        reason = unreachable_reason(exc)
        if reason is None:
            raise
        print(f"error: {reason}", file=sys.stderr)
        return 2


def unreachable_reason(exc: BaseException) -> str | None:
    """A server the command needs refused it or did not answer: one line saying which, not a traceback
    of a hundred lines of SQLAlchemy and psycopg2 frames."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from sqlalchemy.exc import InterfaceError, OperationalError

    if isinstance(exc, OperationalError | InterfaceError):
        detail = str(exc.orig or exc).strip().splitlines()
        first = detail[0] if detail else type(exc).__name__
        return f"PostgreSQL: {first} (is DATABASE_URL right and the server up?)"
    if isinstance(exc, RedisConnectionError | RedisTimeoutError):
        return f"Redis: {exc} (is REDIS_URL right and the server up?)"
    return None


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
