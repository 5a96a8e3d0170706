"""API errors become typed exceptions; the CLI's URL and key resolve flags > env > file > default."""

from __future__ import annotations

from pathlib import Path

import pytest
from assay_client import errors
from assay_client.cli.config import DEFAULT_URL, ConfigError, default_config_path, resolve


def body(code: str, details: object = None) -> bytes:
    import json

    return json.dumps({"error": {"code": code, "message": f"about {code}", "details": details}}).encode()


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (400, "invalid_cursor", errors.BadRequest),
        (401, "invalid_api_key", errors.Unauthorized),
        (404, "job_not_found", errors.NotFound),
        (409, "idempotency_key_reused", errors.IdempotencyKeyReused),
        (409, "job_not_cancelable", errors.NotCancelable),
        (409, "webhook_delivery_in_progress", errors.Conflict),
        (413, "batch_too_large", errors.PayloadTooLarge),
        (415, "unsupported_media_type", errors.UnsupportedMediaType),
        (422, "invalid_jobs", errors.ValidationFailed),
        (429, "rate_limited", errors.RateLimited),
        (503, "queue_full", errors.QueueFull),
        (503, "not_ready", errors.ServiceUnavailable),
        (500, "internal_error", errors.ServerError),
        (418, "teapot", errors.AssayError),
    ],
)
def test_each_status_and_code_has_its_exception(status: int, code: str, cls: type[errors.AssayError]) -> None:
    error = errors.error_from_response(status, body(code, {"limit": 1}), {"X-Request-ID": "r1"}, retry_after=2.0)
    assert type(error) is cls and isinstance(error, errors.AssayError)
    assert (error.status, error.code, error.message, error.details) == (status, code, f"about {code}", {"limit": 1})
    assert error.retry_after == 2.0 and error.request_id == "r1"
    assert str(error) == f"{status} {code}: about {code}"


def test_a_body_that_is_not_the_api_shape_still_makes_a_useful_error() -> None:
    error = errors.error_from_response(502, b"<html>Bad Gateway</html>", {})
    assert isinstance(error, errors.ServerError) and error.code == "http_502" and "Bad Gateway" in error.message
    assert errors.error_from_response(503, b"", {}).message == "HTTP 503"


ENV = {"HOME": "/home/u"}


def test_defaults_without_anything(tmp_path: Path) -> None:
    config = resolve(url=None, api_key=None, timeout=None, config_path=None, env={"HOME": str(tmp_path)})
    assert (config.url, config.api_key, config.timeout) == (DEFAULT_URL, None, 30.0)


def test_flags_beat_environment_beat_file(tmp_path: Path) -> None:
    file = tmp_path / "assay" / "config.toml"
    file.parent.mkdir()
    file.write_text('url = "http://file:1/"\napi_key = "assay_file"\ntimeout = 5\n')
    env = {"XDG_CONFIG_HOME": str(tmp_path)}
    from_file = resolve(url=None, api_key=None, timeout=None, config_path=None, env=env)
    assert (from_file.url, from_file.api_key, from_file.timeout, from_file.source) == (
        "http://file:1",
        "assay_file",
        5.0,
        str(file),
    )
    env_wins = resolve(
        url=None,
        api_key=None,
        timeout=None,
        config_path=None,
        env={**env, "ASSAY_URL": "http://env:2", "ASSAY_API_KEY": "assay_env"},
    )
    assert (env_wins.url, env_wins.api_key, env_wins.source) == ("http://env:2", "assay_env", "ASSAY_API_KEY")
    flags_win = resolve(
        url="http://flag:3",
        api_key="assay_flag",
        timeout=9,
        config_path=None,
        env={**env, "ASSAY_API_KEY": "assay_env"},
    )
    assert (flags_win.url, flags_win.api_key, flags_win.timeout) == ("http://flag:3", "assay_flag", 9.0)


def test_config_path_lookup() -> None:
    assert default_config_path(ENV) == Path("/home/u/.config/assay/config.toml")
    assert default_config_path({**ENV, "XDG_CONFIG_HOME": "/x"}) == Path("/x/assay/config.toml")
    assert default_config_path({**ENV, "ASSAY_CONFIG": "/etc/assay.toml"}) == Path("/etc/assay.toml")


def test_bad_config_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        resolve(url=None, api_key=None, timeout=None, config_path=str(tmp_path / "nope.toml"), env=ENV)
    bad = tmp_path / "bad.toml"
    bad.write_text("url = ")
    with pytest.raises(ConfigError, match="not valid TOML"):
        resolve(url=None, api_key=None, timeout=None, config_path=str(bad), env=ENV)
    bad.write_text('apikey = "typo"')
    with pytest.raises(ConfigError, match="unknown keys"):
        resolve(url=None, api_key=None, timeout=None, config_path=str(bad), env=ENV)


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        ({"url": "localhost:8000"}, "must look like http"),
        ({"url": "ftp://host"}, "must look like http"),
        ({"api_key": "clé"}, "characters no key has"),
        ({"api_key": "two words"}, "characters no key has"),
        ({"timeout": -1.0}, "positive number"),
        ({"timeout": 0.0}, "positive number"),
    ],
)
def test_settings_no_request_could_use_are_refused_at_once(flags: dict, words: str) -> None:
    """They were retried as connection failures (for up to --retry-for, 10 minutes, in submit) or raised."""
    given = {"url": None, "api_key": None, "timeout": None, **flags}
    with pytest.raises(ConfigError, match=words):
        resolve(config_path=None, env=ENV, **given)


def test_a_key_read_with_its_newline_is_used_without_it() -> None:
    config = resolve(url=None, api_key=None, timeout=None, config_path=None, env={**ENV, "ASSAY_API_KEY": "k1\n"})
    assert config.api_key == "k1"


def test_an_html_page_is_said_to_be_not_the_api_and_plain_text_is_kept() -> None:
    """A wrong ASSAY_URL (another server, a proxy's error page) dumped the page's HTML as the message."""
    page = b"<!DOCTYPE HTML><html><head><title>Error response</title></head><body><h1>404</h1></body></html>"
    assert str(errors.error_from_response(404, page, {})).endswith(
        "not an Assay API answer (an HTML page: Error response); is the URL right?"
    )
    assert errors.error_from_response(502, b"Bad gateway\n", {}).message == "Bad gateway"


@pytest.mark.parametrize(
    "args",
    [["jobs", "get", "job_abc", "--wait", "-1"], ["submit", "sentiment", "hi", "--wait", "--wait-timeout", "-5"]],
)
def test_a_negative_wait_is_refused_before_any_request(args: list[str]) -> None:
    """`--wait -1` got the job at once and exited 0, as if the value had been meant."""
    from assay_client.cli.main import cli
    from click.testing import CliRunner

    result = CliRunner().invoke(cli, ["--url", "http://127.0.0.1:9", "--api-key", "k", *args])
    assert result.exit_code == 2, result.output
    assert "Invalid value" in result.output and args[-1] in result.output, result.output
