"""Structured logging: one JSON object per line, with request/job/task ids bound from context."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from config.celeryconf import RETENTION_TASK, SWEEP_TASK, UPLOADS_SWEEP_TASK, WEBHOOK_SWEEP_TASK
from config.settings import Settings

_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("assay_log_context", default=None)

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def bind(**fields: Any) -> contextvars.Token:
    """Add fields (request_id, job_id, task_id...) to every log line of the current context."""
    return _context.set({**(_context.get() or {}), **fields})


def unbind(token: contextvars.Token) -> None:
    _context.reset(token)


@contextmanager
def bound(**fields: Any) -> Iterator[None]:
    token = bind(**fields)
    try:
        yield
    finally:
        unbind(token)


class JsonFormatter(logging.Formatter):
    """Key-value JSON lines: what log shippers and `jq` read without a parser of our own."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        payload.update(_context.get() or {})
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


#: The beat's periodic tasks. Each writes a line of its own when it did something (or failed).
HOUSEKEEPING_TASKS = (SWEEP_TASK, WEBHOOK_SWEEP_TASK, UPLOADS_SWEEP_TASK, RETENTION_TASK)


class QuietHousekeeping(logging.Filter):
    """Drops Celery's routine INFO lines about the periodic tasks: "Sending due task", "received", "succeeded".

    With the default schedule they were 3 lines every 5 s, so `make run`'s output scrolled its API key
    and every line that mattered out of sight within a minute. Their warnings and errors pass, and
    ASSAY_LOG_LEVEL=DEBUG shows everything."""

    _MARKS = tuple(mark for name in HOUSEKEEPING_TASKS for mark in (f"{name}[", f"({name})"))

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING or not record.name.startswith("celery."):
            return True
        message = record.getMessage()
        return not any(mark in message for mark in self._MARKS)


def configure_logging(settings: Settings, stream: Any = None) -> None:
    """Install the root handler once per process (called by entry points, never on import)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if settings.log_json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    if settings.log_level != "DEBUG":
        handler.addFilter(QuietHousekeeping())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    for noisy in ("urllib3", "filelock", "transformers", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
