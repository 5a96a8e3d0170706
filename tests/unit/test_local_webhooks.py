"""`make run` lets webhooks reach this machine only when nobody else can submit jobs to it."""

from __future__ import annotations

import pytest

from config.settings import load_settings
from deploy.local.run import local_webhooks


@pytest.mark.parametrize(
    ("bind", "expected"),
    [
        ("127.0.0.1:8000", True),
        ("[::1]:8000", True),
        ("localhost:8000", True),
        ("0.0.0.0:8000", False),
        ("10.0.0.5:8000", False),
        ("api.example.com:8000", False),
    ],
)
def test_a_loopback_api_may_call_local_receivers(bind: str, expected: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ASSAY_WEBHOOK_ALLOW_PRIVATE", raising=False)
    assert local_webhooks(load_settings(api_bind=bind)) is expected


def test_an_explicit_setting_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSAY_WEBHOOK_ALLOW_PRIVATE", "false")
    assert local_webhooks(load_settings(api_bind="127.0.0.1:8000")) is False
