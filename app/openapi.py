"""OpenAPI 3.1 document, with schemas generated from the pydantic models the API uses."""

from __future__ import annotations

import functools
from typing import Any

from pydantic import BaseModel

from app import schemas

_MODELS: list[type[BaseModel]] = [
    schemas.JobCreate,
    schemas.AudioJobCreate,
    schemas.WebhookEventList,
    schemas.WebhookSecret,
    schemas.BatchCreate,
    schemas.Job,
    schemas.JobList,
    schemas.BatchCreated,
    schemas.CancelResult,
    schemas.ErrorResponse,
    schemas.AnalysisList,
]


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(name: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(name)}}}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(c): _json("ErrorResponse", "error") for c in codes}


JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}


@functools.cache
def openapi_document() -> dict[str, Any]:
    components: dict[str, Any] = {}
    for model in _MODELS:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(schema.pop("$defs", {}))
        components[model.__name__] = schema
    idem = {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "schema": {"type": "string", "maxLength": 200},
    }
    paths = {
        "/v1/jobs": {
            "post": {
                "summary": "Submit a job",
                "parameters": [idem],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"oneOf": [_ref("JobCreate"), _ref("AudioJobCreate")]}},
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "required": ["analysis", "file"],
                                "properties": {
                                    "analysis": {"type": "string", "examples": ["transcription"]},
                                    "file": {"type": "string", "format": "binary"},
                                    "metadata": {"type": "string", "description": "a JSON object"},
                                    "webhook": {"type": "string", "description": 'JSON {"url", "events"?}'},
                                },
                            }
                        },
                    },
                },
                "responses": {
                    "202": _json("Job", "accepted; Location names the job"),
                    "200": _json("Job", "idempotent replay: the original job"),
                    **_errors(400, 401, 409, 413, 415, 422, 503),
                },
            },
            "get": {
                "summary": "List jobs, newest first",
                "parameters": [
                    {"name": n, "in": "query", "schema": {"type": t}}
                    for n, t in (
                        ("status", "string"),
                        ("analysis", "string"),
                        ("limit", "integer"),
                        ("cursor", "string"),
                    )
                ],
                "responses": {"200": _json("JobList", "a page"), **_errors(400, 401)},
            },
        },
        "/v1/jobs/batch": {
            "post": {
                "summary": "Submit up to ASSAY_MAX_JOBS_PER_BATCH jobs at once",
                "parameters": [idem],
                "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("BatchCreate")}}},
                "responses": {
                    "202": _json("BatchCreated", "accepted, in order"),
                    **_errors(400, 401, 409, 413, 415, 422, 503),
                },
            }
        },
        "/v1/jobs/{job_id}": {
            "get": {
                "summary": "Read a job; ?wait=N long-polls up to N seconds for a final state",
                "parameters": [JOB_ID, {"name": "wait", "in": "query", "schema": {"type": "number", "maximum": 30}}],
                "responses": {"200": _json("Job", "the job"), **_errors(400, 401, 404)},
            },
            "delete": {
                "summary": "Erase input, result and metadata (a live job is canceled first)",
                "parameters": [JOB_ID],
                "responses": {"200": _json("Job", "the erased job"), **_errors(401, 404)},
            },
        },
        "/v1/jobs/{job_id}/cancel": {
            "post": {
                "summary": "Cancel a queued (certain) or running (best effort) job",
                "parameters": [JOB_ID],
                "responses": {"200": _json("CancelResult", "canceled"), **_errors(401, 404, 409)},
            }
        },
        "/v1/jobs/{job_id}/webhooks": {
            "get": {
                "summary": "The job's webhook events, each with every delivery attempt",
                "parameters": [JOB_ID],
                "responses": {"200": _json("WebhookEventList", "events"), **_errors(401, 404)},
            }
        },
        "/v1/webhooks/{event_id}/redeliver": {
            "post": {
                "summary": "Send an event again (same webhook-id); recorded as a new attempt",
                "parameters": [{"name": "event_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"202": {"description": "queued"}, **_errors(401, 404, 409)},
            }
        },
        "/v1/webhooks/secret": {
            "get": {"summary": "The tenant's signing secret", "responses": {"200": _json("WebhookSecret", "secret")}}
        },
        "/v1/webhooks/secret/rotate": {
            "post": {
                "summary": "New secret; the previous one keeps signing beside it for a grace period",
                "responses": {"200": _json("WebhookSecret", "the new secret")},
            }
        },
        "/metrics": {
            "get": {"summary": "Prometheus metrics", "security": [], "responses": {"200": {"description": "text"}}}
        },
        "/v1/analyses": {"get": {"summary": "Analyses served", "responses": {"200": _json("AnalysisList", "catalog")}}},
        "/health": {"get": {"summary": "Process alive", "security": [], "responses": {"200": {"description": "ok"}}}},
        "/ready": {
            "get": {
                "summary": "PostgreSQL and Redis reachable",
                "security": [],
                "responses": {"200": {"description": "ready"}, **_errors(503)},
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
