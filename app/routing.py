"""URL converters: a path segment is a job or event id only if it could be one (store.ids), so
`/v1/jobs/batch` is never mistaken for a job and anything else answers 404 before a query."""

from __future__ import annotations

from flask import Flask
from werkzeug.routing import BaseConverter

from store.ids import id_pattern


def _converter(prefix: str) -> type[BaseConverter]:
    return type(f"{prefix.title()}IdConverter", (BaseConverter,), {"regex": id_pattern(prefix).strip("^$")})


def register_converters(app: Flask) -> None:
    app.url_map.converters["job_id"] = _converter("job")
    app.url_map.converters["event_id"] = _converter("msg")
