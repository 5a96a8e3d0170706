"""The production start-up check: weak Flower passwords and /metrics on the public port are refused."""

from __future__ import annotations

import base64

import pytest

from config.production import metrics_bind_problem, weak_password_reason
from config.settings import SettingsError, load_settings

STRONG = "vN3q-Lr8w_Zt1sXe9KbYp2"  # what `openssl rand -base64 16` looks like
READY = {
    "environment": "production",
    "flower_user": "ops",
    "flower_password": STRONG,
    "api_bind": "0.0.0.0:8000",
    "metrics_bind": "0.0.0.0:9102",
    "secrets_keys": base64.urlsafe_b64encode(b"k" * 32).decode(),  # a Fernet key: 32 bytes, URL-safe base64
}


def test_a_production_configuration_with_strong_credentials_loads() -> None:
    settings = load_settings(**READY)
    assert settings.metrics_bind == "0.0.0.0:9102"


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("assay-dev", "shorter than 16"),
        ("CHANGE_ME", "shorter than 16"),
        ("correct-horse-12", None),
        ("MyFlowerDashboard2026!", "common word 'flower'"),
        ("Password1234567890", "common word 'password'"),
        ("opsopsopsops-1234567", "user name"),
        ("abababababababababab", "distinct characters"),
        ("9f2c47e1b08d3a6f5c21", None),
    ],
)
def test_weak_passwords_are_named_with_a_reason(password: str, reason: str | None) -> None:
    found = weak_password_reason(password, "ops")
    if reason is None:
        assert found is None
    else:
        assert found is not None and reason in found


@pytest.mark.parametrize("password", ["assay-dev", "admin", "changeme-changeme-1", "aaaaaaaaaaaaaaaaaaaaaaaa"])
def test_production_refuses_any_weak_flower_password(password: str) -> None:
    with pytest.raises(SettingsError, match="ASSAY_FLOWER_PASSWORD is too weak"):
        load_settings(**{**READY, "flower_password": password})


def test_development_keeps_its_default_password() -> None:
    assert load_settings(environment="development").flower_password == "assay-dev"


@pytest.mark.parametrize("metrics_bind", ["", "0.0.0.0:8000", "127.0.0.1:8000"])
def test_production_refuses_metrics_on_the_public_port(metrics_bind: str) -> None:
    with pytest.raises(SettingsError, match="ASSAY_METRICS_BIND"):
        load_settings(**{**READY, "metrics_bind": metrics_bind})


def test_metrics_bind_rules() -> None:
    assert metrics_bind_problem("0.0.0.0:8000", "[::]:9102") is None
    assert metrics_bind_problem("0.0.0.0:8000", ":8000") is not None


def test_a_malformed_metrics_bind_names_its_variable() -> None:
    with pytest.raises(SettingsError, match="ASSAY_METRICS_BIND"):
        load_settings(metrics_bind="9102")
