from __future__ import annotations

import os
import subprocess
import sys

import pytest

from config.settings import ROOT, SettingsError, load_settings


def test_defaults_work_on_a_developer_machine() -> None:
    settings = load_settings(database_url="postgresql://postgres@127.0.0.1:5432/assay")
    assert settings.database_url.startswith("postgresql+psycopg2://")
    assert settings.database_url_plain == "postgresql://postgres@127.0.0.1:5432/assay"
    assert settings.queue_name("text") == f"{settings.queue_prefix}.text"
    assert settings.prefetch_multiplier >= settings.max_batch_size


def test_bad_value_names_the_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSAY_MAX_BATCH_SIZE", "zero")
    with pytest.raises(SettingsError, match="ASSAY_MAX_BATCH_SIZE"):
        load_settings()


def test_non_postgres_database_url_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://root@localhost/x")
    with pytest.raises(SettingsError, match=r"^invalid configuration: DATABASE_URL: .*postgresql"):
        load_settings()  # the variable as set: it said ASSAY_DATABASE_URL


def test_visibility_timeout_must_outlast_leases() -> None:
    with pytest.raises(SettingsError, match="visibility_timeout_seconds"):
        load_settings(lease_seconds=3000, visibility_timeout_seconds=3000)


def test_production_refuses_the_default_flower_password() -> None:
    with pytest.raises(SettingsError, match="FLOWER_PASSWORD"):
        load_settings(environment="production")


@pytest.mark.parametrize("keys", ["CHANGE_ME", "not-a-key,also-not"])
def test_production_refuses_secrets_keys_that_are_not_fernet_keys(keys: str) -> None:
    """The example's CHANGE_ME passed the start-up check and failed at the first webhook delivery."""
    from cryptography.fernet import Fernet

    good = {"flower_password": "Xk3-long-and-random-enough-9q", "metrics_bind": "0.0.0.0:9102"}
    with pytest.raises(SettingsError, match="not Fernet keys"):
        load_settings(environment="production", secrets_keys=keys, **good)
    fine = f"{Fernet.generate_key().decode()},{Fernet.generate_key().decode()}"
    assert load_settings(environment="production", secrets_keys=fine, **good).environment == "production"


NOTHING_THERE = "postgresql://postgres@127.0.0.1:1/assay"


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["store.cli", "keys", "list"], {"ASSAY_MAX_BATCH_SIZE": "abc"}, "error: invalid configuration: ASSAY_MAX"),
        (["store.cli", "secrets", "reencrypt"], {"ASSAY_SECRETS_KEYS": ""}, "error: ASSAY_SECRETS_KEYS is not set"),
        (["store.migrate", "current"], {"ASSAY_LEASE_SECONDS": "-1"}, "error: invalid configuration: ASSAY_LEASE"),
        (["deploy.local.run"], {"ASSAY_API_WORKERS": "many"}, "error: invalid configuration: ASSAY_API_WORKERS"),
        (
            ["workers.role", "worker", "--dry-run"],
            {"ASSAY_WORKER_FAMILIES": "text"},
            "error: invalid configuration: ASSAY_WORKER_FAMILIES: not valid JSON",
        ),
        # Nothing listens on port 1: a server the command needs is down is one line too, not 130 lines of frames.
        (["store.cli", "keys", "list"], {"DATABASE_URL": NOTHING_THERE}, "error: PostgreSQL: "),
        (["store.migrate", "current"], {"DATABASE_URL": NOTHING_THERE}, "error: PostgreSQL: "),
    ],
)
def test_a_command_with_a_bad_setting_says_so_in_one_line(argv: list[str], env: dict[str, str], message: str) -> None:
    """Exit 2 and the message, no traceback: the message used to be the last line under thirty others."""
    done = subprocess.run(
        [sys.executable, "-m", *argv],
        env={**os.environ, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr.startswith(message) and "Traceback" not in done.stderr, done.stderr
