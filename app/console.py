"""/console: the web console, a static page and one script served by the API (no build step, no CDN).

The page holds no secrets and needs no session on the server: the API key is typed in, kept in the
browser's sessionStorage (gone when the tab closes) and sent only in the Authorization header of the
console's own fetch() calls, never in a URL. The event stream is read with fetch() rather than
EventSource for that reason (EventSource cannot send headers). The Content-Security-Policy allows
scripts and styles from this origin only, so no inline script can run even if a job's text were
rendered unescaped (the script only ever sets textContent).
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, redirect, send_from_directory

bp = Blueprint("console", __name__)

STATIC = Path(__file__).resolve().parent / "console_static"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


def _static(name: str) -> Response:
    response = send_from_directory(STATIC, name, max_age=60)
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "DENY"
    return response


@bp.get("/console")
def page() -> Response:
    return _static("index.html")


@bp.get("/console/")
def slash() -> Response:
    return redirect("/console", code=308)


@bp.get("/console/<any('console.js', 'console.css'):name>")
def asset(name: str) -> Response:
    return _static(name)
