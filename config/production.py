"""What a production process refuses to start with: a guessable Flower password, metrics on the public port.

Pure functions of a few settings values, so the rules are unit-tested without an environment. Flower's
basic auth is the only thing between its dashboard (which can shut workers down through remote control)
and whoever reaches its port, so "not the shipped default" is not enough: a short, common or
low-variety password is refused too. /metrics names analyses, queues and error rates: in production it
is served on its own listener (ASSAY_METRICS_BIND), which the public Service never exposes.
"""

from __future__ import annotations

import binascii

MIN_PASSWORD_CHARS = 16
MIN_DISTINCT_CHARS = 8
#: Substrings that make a password guessable whatever surrounds them (lower case).
COMMON_WORDS = (
    "password", "passwd", "admin", "assay", "flower", "changeme", "change_me", "change-me", "secret",
    "letmein", "welcome", "qwerty", "123456", "default", "celery",
)  # fmt: skip


def weak_password_reason(password: str, user: str = "") -> str | None:
    """Why `password` is too weak for Flower's basic auth, or None if it will do.

    `openssl rand -base64 24` (or `-hex 16`) passes; anything a person would pick from memory does not.
    """
    if len(password) < MIN_PASSWORD_CHARS:
        return f"shorter than {MIN_PASSWORD_CHARS} characters"
    lowered = password.lower()
    if len(user) >= 3 and user.lower() in lowered:
        return "contains the user name"
    for word in COMMON_WORDS:
        if word in lowered:
            return f"contains the common word {word!r}"
    if len(set(password)) < MIN_DISTINCT_CHARS:
        return f"fewer than {MIN_DISTINCT_CHARS} distinct characters"
    return None


def bind_port(bind: str) -> str:
    """The port of a gunicorn-style bind, `host:port` (`[::]:9102` too)."""
    return bind.rsplit(":", 1)[-1]


def metrics_bind_problem(api_bind: str, metrics_bind: str) -> str | None:
    """Why this pair would serve /metrics unauthenticated on the public port, or None."""
    if not metrics_bind:
        return "set ASSAY_METRICS_BIND (e.g. 0.0.0.0:9102): /metrics must not be served on the public API port"
    if bind_port(metrics_bind) == bind_port(api_bind):
        return "ASSAY_METRICS_BIND must use a port other than ASSAY_API_BIND's"
    return None


def production_problems(
    *, flower_user: str, flower_password: str, api_bind: str, metrics_bind: str, secrets_keys: str
) -> list[str]:
    """Everything production refuses, each as the sentence an operator needs; empty when ready."""
    problems = []
    weak = weak_password_reason(flower_password, flower_user)
    if weak:
        problems.append(f"ASSAY_FLOWER_PASSWORD is too weak ({weak}): use e.g. `openssl rand -base64 24`")
    metrics = metrics_bind_problem(api_bind, metrics_bind)
    if metrics:
        problems.append(metrics)
    if not secrets_keys:
        problems.append("set ASSAY_SECRETS_KEYS in production: it encrypts webhook signing secrets at rest")
    elif bad := [key for key in secrets_keys.split(",") if not _is_fernet_key(key.strip())]:
        problems.append(
            f"ASSAY_SECRETS_KEYS holds {len(bad)} value(s) that are not Fernet keys (e.g. the example's "
            "CHANGE_ME): make one with `python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'`"
        )
    return problems


def _is_fernet_key(key: str) -> bool:
    """Whether Fernet takes it (32 bytes, URL-safe base64): checked at start, not at the first delivery."""
    from cryptography.fernet import Fernet

    try:
        Fernet(key.encode())
    except (binascii.Error, ValueError):
        return False
    return True
