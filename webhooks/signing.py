"""Standard Webhooks signatures (v1, HMAC-SHA256 over `{id}.{timestamp}.{body}`)."""

from __future__ import annotations

from datetime import datetime

from standardwebhooks import Webhook


def sign(secrets: list[str], msg_id: str, when: datetime, body: str) -> str:
    """Space-separated v1 signatures: the current secret's, plus the previous one's during a rotation."""
    return " ".join(Webhook(secret).sign(msg_id, when, body) for secret in secrets)
