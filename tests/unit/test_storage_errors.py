"""Which refused writes are the server's trouble (503, retry later) and which the upload's (413)."""

from __future__ import annotations

import errno

import pytest
from flask import Flask

from app.errors import register_error_handlers
from app.json_provider import OrjsonProvider


def app_raising(error: OSError) -> Flask:
    app = Flask(__name__)
    app.json = OrjsonProvider(app)
    register_error_handlers(app)

    @app.post("/upload")
    def upload() -> str:
        raise error

    return app


@pytest.mark.parametrize(
    ("code", "status", "error_code", "retry_after"),
    [
        (errno.ENOSPC, 503, "storage_unavailable", "30"),  # the disk is full: frees up when someone acts
        (errno.EDQUOT, 503, "storage_unavailable", "30"),
        (errno.EROFS, 503, "storage_unavailable", "30"),  # remounted read-only after an error
        (errno.EFBIG, 413, "request_too_large", None),  # this file is too large to store here, every time
        (errno.ECONNRESET, 500, "internal_error", None),  # not a storage refusal: a logged bug, as before
    ],
)
def test_a_refused_write_is_answered_by_what_it_means(code: int, status: int, error_code: str, retry_after) -> None:
    response = app_raising(OSError(code, "refused")).test_client().post("/upload")
    assert response.status_code == status
    assert response.get_json()["error"]["code"] == error_code
    assert response.headers.get("Retry-After") == retry_after
