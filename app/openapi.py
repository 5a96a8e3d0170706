"""The OpenAPI 3.1 document, as strict as the API itself.

Responses are described by the pydantic models the API's documents follow. Requests are described by
hand, from the same settings and rules the server checks (lengths and counts from settings, the
analyses from the catalog, the id, key and URL patterns from where they are enforced), so a request
the schema allows is accepted and one it forbids is refused: schemathesis runs every check against
the real server in the test suite (tests/integration/test_openapi_fuzz.py). Request models in
app.schemas validate more leniently on purpose, so each problem gets its own error code.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from app import schemas
from app.cursors import CURSOR_PATTERN
from app.events_api import EVENT_ID_PATTERN, LAST_EVENT_ID_PARAMETER
from app.request_json import MAX_DEPTH, NO_NUL_PATTERN, TEXT_PATTERN
from app.validation import BASE64_PATTERN, IDEMPOTENCY_KEY_PATTERN
from config import Settings
from config.catalog import AnalysisConfig
from models.cdr.spec import INTEGER_PARAMETERS, REQUIRED_COLUMNS, CdrParameters
from store.ids import id_pattern
from store.tables import JOB_STATUSES
from webhooks.urlguard import URL_PATTERN

#: Schemas written from the pydantic models as they are (the responses, and request bodies with no
#: catalog- or settings-dependent bounds); the job submissions are written by hand in _request_schemas.
_MODEL_SCHEMAS: list[type[BaseModel]] = [
    schemas.Job,
    schemas.JobList,
    schemas.BatchCreated,
    schemas.CancelResult,
    schemas.ErrorResponse,
    schemas.WebhookEventList,
    schemas.WebhookSecret,
    schemas.SecretRotation,
    schemas.AnalysisList,
    schemas.Redelivery,
    schemas.Stats,
]

ERRORS: dict[int, str] = {
    400: "malformed request (`invalid_json`, `invalid_wait`, `invalid_limit`, `invalid_cursor`, ...), or a query "
    "parameter the operation does not take, or one given twice (`invalid_parameter`)",
    401: "no API key, not a bearer token, or an unknown or revoked key",
    404: "no such job or event for this API key's tenant (another tenant's is never revealed)",
    409: "conflict (`idempotency_key_reused`, `job_not_cancelable`, `webhook_delivery_in_progress`)",
    413: "a limit from settings was passed (`input_too_large`, `audio_too_large`, `batch_too_large`, ...)",
    415: "the body is not application/json (or multipart/form-data for an upload); JSON with a Content-Encoding",
    410: "the job was erased (DELETE): `job_erased`, with what remains of it in `details.job`",
    422: "well-formed but not a valid job (`validation_error`, `unknown_analysis`, `invalid_audio`, ...)",
    429: "a per-key rate limit (`rate_limited`), too many open long-polls/streams (`too_many_open`) or the "
    "tenant's queued-job quota (`tenant_queue_full`); see Retry-After and RateLimit-*",
    503: "back-pressure (`queue_full`), a dependency down (`database_unavailable`) or no room for an upload "
    "(`storage_unavailable`); see Retry-After",
}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(name: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(name)}}}


def _optional(name: str) -> dict[str, Any]:
    """The schema, or null: JSON null means "none", as leaving the field out does."""
    return {"anyOf": [_ref(name), {"type": "null"}]}


def _plain(description: str, media_type: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {media_type: {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(code): _json("ErrorResponse", ERRORS[code]) for code in codes}


def _text(pattern: str = NO_NUL_PATTERN, **bounds: int) -> dict[str, Any]:
    return {"type": "string", "pattern": pattern, **bounds}


def _request_schemas(settings: Settings, catalog: dict[str, AnalysisConfig]) -> dict[str, Any]:
    text_analyses = sorted(name for name, a in catalog.items() if a.input == "text")
    audio_analyses = sorted(name for name, a in catalog.items() if a.input == "audio")
    cdr_analyses = sorted(name for name, a in catalog.items() if a.input == "cdr")
    cdr_columns = {
        "type": "object",
        "additionalProperties": False,
        "properties": {name: _text(minLength=1, maxLength=128) for name in REQUIRED_COLUMNS},
        "description": "the file's names for the four columns it must have, where they differ",
    }
    cdr_parameters = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            name: {
                "type": "integer" if name in INTEGER_PARAMETERS else "number",
                "minimum": low,
                "maximum": high,
            }
            for name, (low, high) in CdrParameters.BOUNDS.items()
        },
        "description": "detection thresholds; each defaults to the catalog's value (GET /v1/analyses)",
    }
    metadata_note = f"at most {settings.max_metadata_bytes} bytes as JSON and {MAX_DEPTH} levels deep"
    return {
        "MetadataValue": {
            "anyOf": [
                _text(),
                {"type": "number"},
                {"type": "boolean"},
                {"type": "null"},
                {"type": "array", "items": _ref("MetadataValue")},
                _ref("Metadata"),
            ]
        },
        "Metadata": {
            "type": "object",
            "description": f"echoed back on the job; {metadata_note}; strings without NUL",
            "propertyNames": _text(),
            "additionalProperties": _ref("MetadataValue"),
        },
        "WebhookSpec": {
            "type": "object",
            "required": ["url"],
            "additionalProperties": False,
            "properties": {
                "url": _text(URL_PATTERN, maxLength=settings.max_webhook_url_chars)
                | {"description": "http(s); must resolve to public addresses unless the deployment allows others"},
                "events": {
                    "type": "array",
                    "minItems": 1,
                    "items": {"enum": ["started", "completed"]},
                    "description": "started: job.started; completed: job.succeeded, job.failed or job.canceled",
                },
            },
        },
        "JobOptions": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "cache": {"type": "boolean", "description": "false: never served from the cache or coalesced"},
                "return_embedding": {
                    "type": "boolean",
                    "description": "text analyses on the sentence encoder: add the normalised embedding",
                },
                "return_diagnostics": {"type": "boolean", "description": "add stage timings, tokens, versions"},
            },
        },
        "TextJobCreate": {
            "type": "object",
            "required": ["analysis", "input"],
            "additionalProperties": False,
            "properties": {
                "analysis": {"enum": text_analyses},
                "input": {
                    "type": "object",
                    "required": ["text"],
                    "additionalProperties": False,
                    "properties": {
                        "text": _text(TEXT_PATTERN, minLength=1, maxLength=settings.max_text_chars)
                        | {"description": "not blank, no NUL"}
                    },
                },
                "metadata": _ref("Metadata"),
                "webhook": _optional("WebhookSpec"),
                "options": _optional("JobOptions"),
            },
        },
        "AudioJobCreate": {
            "type": "object",
            "required": ["analysis", "input"],
            "additionalProperties": False,
            "properties": {
                "analysis": {"enum": audio_analyses},
                "input": {
                    "type": "object",
                    "required": ["audio_base64"],
                    "additionalProperties": False,
                    "properties": {
                        "audio_base64": {
                            "type": "string",
                            "pattern": BASE64_PATTERN,
                            "contentEncoding": "base64",
                            "contentMediaType": "audio/*",
                            "description": f"any format FFmpeg decodes, at most {settings.max_audio_bytes} bytes "
                            f"and {settings.max_audio_seconds:g} s; probed at submission",
                        },
                        "filename": {"anyOf": [_text(maxLength=255), {"type": "null"}]},
                    },
                },
                "metadata": _ref("Metadata"),
                "webhook": _optional("WebhookSpec"),
                "options": _optional("JobOptions"),
            },
        },
        "CdrJobCreate": {
            "type": "object",
            "required": ["analysis", "input"],
            "additionalProperties": False,
            "properties": {
                "analysis": {"enum": cdr_analyses},
                "input": {
                    "type": "object",
                    "required": ["cdr_base64"],
                    "additionalProperties": False,
                    "properties": {
                        "cdr_base64": {
                            "type": "string",
                            "pattern": BASE64_PATTERN,
                            "contentEncoding": "base64",
                            "description": "call records: CSV with a header, or JSON lines, optionally gzip; "
                            f"within the request limit ({settings.max_request_bytes} bytes): larger files "
                            "go as multipart",
                        },
                        "filename": {"anyOf": [_text(maxLength=255), {"type": "null"}]},
                        "columns": {"anyOf": [cdr_columns, {"type": "null"}]},
                    },
                },
                "parameters": {"anyOf": [cdr_parameters, {"type": "null"}]},
                "metadata": _ref("Metadata"),
                "webhook": _optional("WebhookSpec"),
            },
        },
        "JobCreate": {"oneOf": [_ref("TextJobCreate"), _ref("AudioJobCreate"), _ref("CdrJobCreate")]},
        "BatchCreate": {
            "type": "object",
            "required": ["jobs"],
            "additionalProperties": False,
            "properties": {
                "jobs": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": settings.max_jobs_per_batch,
                    "items": _ref("JobCreate"),
                },
                "webhook": _optional("WebhookSpec") | {"description": "for every job that sets none of its own"},
            },
        },
        "AudioUpload": {
            "type": "object",
            "required": ["analysis", "file"],
            "properties": {
                "analysis": {"enum": audio_analyses + cdr_analyses},
                "file": {
                    "type": "string",
                    "format": "binary",
                    "description": f"audio, or call records (at most {settings.max_cdr_bytes} bytes)",
                },
                "metadata": _ref("Metadata"),
                "webhook": _optional("WebhookSpec"),
                "columns": cdr_columns | {"description": "call records only: " + cdr_columns["description"]},
                "parameters": cdr_parameters | {"description": "call records only: detection thresholds"},
                "options": _optional("JobOptions") | {"description": "audio only: cache opt-out, diagnostics"},
            },
        },
    }


def openapi_document(settings: Settings, catalog: dict[str, AnalysisConfig]) -> dict[str, Any]:
    components: dict[str, Any] = _request_schemas(settings, catalog)
    for model in _MODEL_SCHEMAS:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(schema.pop("$defs", {}))
        components[model.__name__] = schema
    job_id = {"name": "job_id", "in": "path", "required": True, "schema": _text(id_pattern("job"))}
    event_id = {"name": "event_id", "in": "path", "required": True, "schema": _text(id_pattern("msg"))}
    idem = {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "description": "same key and body: the original job(s), 200; same key, other body: 409",
        "schema": _text(IDEMPOTENCY_KEY_PATTERN),
    }
    job_links = {
        "GetJob": {"operationId": "getJob", "parameters": {"job_id": "$response.body#/id"}},
        "CancelJob": {"operationId": "cancelJob", "parameters": {"job_id": "$response.body#/id"}},
        "JobWebhooks": {"operationId": "jobWebhooks", "parameters": {"job_id": "$response.body#/id"}},
        "EraseJob": {"operationId": "eraseJob", "parameters": {"job_id": "$response.body#/id"}},
    }
    retry_after = {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds to wait"}}
    limited = {
        **retry_after,
        **{
            f"RateLimit-{name}": {"schema": {"type": "integer"}, "description": what}
            for name, what in (("Limit", "requests per window"), ("Remaining", "left"), ("Reset", "seconds"))
        },
    }
    busy = {
        "429": _json("ErrorResponse", ERRORS[429]) | {"headers": limited},
        "503": _json("ErrorResponse", ERRORS[503]) | {"headers": retry_after},
    }
    paths: dict[str, Any] = {
        "/v1/jobs": {
            "post": {
                "operationId": "createJob",
                "summary": "Submit a job",
                "parameters": [idem],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": _ref("JobCreate")},
                        "multipart/form-data": {
                            "schema": _ref("AudioUpload"),
                            "encoding": {
                                "metadata": {"contentType": "application/json"},
                                "webhook": {"contentType": "application/json"},
                                "columns": {"contentType": "application/json"},
                                "parameters": {"contentType": "application/json"},
                                "options": {"contentType": "application/json"},
                            },
                        },
                    },
                },
                "responses": {
                    "202": _json("Job", "accepted; Location names the job") | {"links": job_links},
                    "200": _json("Job", "idempotent replay: the original job") | {"links": job_links},
                    **_errors(400, 401, 409, 413, 415, 422),
                    **busy,
                },
            },
            "get": {
                "operationId": "listJobs",
                "summary": "List the tenant's jobs, newest first (keyset pagination)",
                "parameters": [
                    {"name": "status", "in": "query", "schema": {"enum": [str(s) for s in JOB_STATUSES]}},
                    {"name": "analysis", "in": "query", "schema": {"enum": sorted(catalog)}},
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": settings.list_max_limit},
                    },
                    {
                        "name": "cursor",
                        "in": "query",
                        "schema": {"type": "string", "pattern": CURSOR_PATTERN},
                        "description": "next_cursor of the previous page",
                    },
                ],
                "responses": {"200": _json("JobList", "a page"), **_errors(400, 401, 422), **busy},
            },
        },
        "/v1/jobs/batch": {
            "post": {
                "operationId": "createBatch",
                "summary": "Submit up to ASSAY_MAX_JOBS_PER_BATCH jobs at once; one invalid entry creates none",
                "parameters": [idem],
                "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("BatchCreate")}}},
                "responses": {
                    "202": _json("BatchCreated", "accepted, in order"),
                    "200": _json("BatchCreated", "idempotent replay: the original jobs"),
                    **_errors(400, 401, 409, 413, 415, 422),
                    **busy,
                },
            }
        },
        "/v1/jobs/{job_id}": {
            "get": {
                "operationId": "getJob",
                "summary": "Read a job; ?wait=N long-polls up to N seconds for a final state",
                "description": "An erased job (DELETE) answers 410 `job_erased`; its bare record (id, analysis, "
                "status, timestamps, attempts, error code, `erased_at`) is in `error.details.job` and stays in "
                "GET /v1/jobs listings for accounting.",
                "parameters": [
                    job_id,
                    {
                        "name": "wait",
                        "in": "query",
                        "schema": {"type": "number", "minimum": 0, "maximum": settings.max_wait_seconds},
                    },
                ],
                "responses": {"200": _json("Job", "the job"), **_errors(400, 401, 404, 410), **busy},
            },
            "delete": {
                "operationId": "eraseJob",
                "summary": "Erase the job's input, result, error message and metadata (a live job is canceled)",
                "description": "Answers 200 with the bare record that stays (GET then answers 410). Erasing "
                "twice is harmless. The job's webhook events and uploaded audio go too.",
                "parameters": [job_id],
                "responses": {"200": _json("Job", "the erased job"), **_errors(400, 401, 404), **busy},
            },
        },
        "/v1/jobs/{job_id}/cancel": {
            "post": {
                "operationId": "cancelJob",
                "summary": "Cancel a queued (certain) or running (best effort) job",
                "parameters": [job_id],
                "responses": {"200": _json("CancelResult", "canceled"), **_errors(400, 401, 404, 409), **busy},
            }
        },
        "/v1/jobs/{job_id}/webhooks": {
            "get": {
                "operationId": "jobWebhooks",
                "summary": "The job's webhook events, each with every delivery attempt",
                "parameters": [job_id],
                "responses": {"200": _json("WebhookEventList", "events"), **_errors(400, 401, 404, 410), **busy},
            }
        },
        "/v1/webhooks/{event_id}/redeliver": {
            "post": {
                "operationId": "redeliverEvent",
                "summary": "Send an event again (same webhook-id); recorded as a new attempt",
                "parameters": [event_id],
                "responses": {"202": _json("Redelivery", "queued"), **_errors(400, 401, 404, 409), **busy},
            }
        },
        "/v1/webhooks/secret": {
            "get": {
                "operationId": "webhookSecret",
                "summary": "The tenant's signing secret",
                "responses": {"200": _json("WebhookSecret", "secret"), **_errors(400, 401), **busy},
            }
        },
        "/v1/webhooks/secret/rotate": {
            "post": {
                "operationId": "rotateWebhookSecret",
                "summary": "New secret; the previous one keeps signing beside it for a grace period",
                "description": "No body: the deployment's grace period (ASSAY_WEBHOOK_SECRET_GRACE_SECONDS). "
                '`{"grace_seconds": 0}` after a leak: no earlier secret signs from now on.',
                "requestBody": {"required": False, "content": {"application/json": {"schema": _ref("SecretRotation")}}},
                "responses": {
                    "200": _json("WebhookSecret", "the new secret"),
                    **_errors(400, 401, 415, 422),
                    **busy,
                },
            }
        },
        "/v1/analyses": {
            "get": {
                "operationId": "listAnalyses",
                "summary": "Analyses served",
                "responses": {"200": _json("AnalysisList", "catalog"), **_errors(400, 401), **busy},
            }
        },
        "/v1/stats": {
            "get": {
                "operationId": "getStats",
                "summary": "The tenant's queued and running jobs, the last minute's throughput, queue depths",
                "responses": {"200": _json("Stats", "figures"), **_errors(400, 401), **busy},
            }
        },
        "/v1/events": {
            "get": {
                "operationId": "streamEvents",
                "summary": "Server-sent events: a frame per change of any of the tenant's jobs, as it commits",
                "description": "`event: job` frames, `data` {job_id, analysis, status, at, error_code?}, each "
                "with an `id`; reconnect with `Last-Event-ID` to resume. `event: reset` when the events "
                "since that id are no longer kept (list the jobs again). `: keepalive` comments meanwhile.",
                "parameters": [
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string", "pattern": f"^{EVENT_ID_PATTERN}$"},
                    },
                    {
                        "name": LAST_EVENT_ID_PARAMETER,
                        "in": "query",
                        "required": False,
                        "description": "the same, for EventSource polyfills; the header wins when both are sent",
                        "schema": {"type": "string", "pattern": f"^{EVENT_ID_PATTERN}$"},
                    },
                ],
                "responses": {
                    "200": _plain("the stream", "text/event-stream", {"type": "string"}),
                    **_errors(400, 401),
                    **busy,
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics",
                "security": [],
                "responses": {
                    "200": {"description": "text", "content": {"text/plain": {"schema": {"type": "string"}}}}
                },
            }
        },
        "/health": {
            "get": {
                "operationId": "health",
                "summary": "Process alive; touches no dependency",
                "security": [],
                "responses": {
                    "200": {"description": "ok", "content": {"application/json": {"schema": {"type": "object"}}}}
                },
            }
        },
        "/ready": {
            "get": {
                "operationId": "ready",
                "summary": "PostgreSQL and Redis reachable",
                "security": [],
                "responses": {
                    "200": _plain("ready", "application/json", {"type": "object"}),
                    "503": _json("ErrorResponse", "`not_ready`: names what is unreachable"),
                },
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Assay", "version": "1.0.0", "description": "Asynchronous content analysis."},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
