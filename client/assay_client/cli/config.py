"""Where the CLI's URL and API key come from: flags, then environment, then a TOML file, then defaults.

Pure functions of what they are given (flags, an environment mapping): main.py reads os.environ
and passes it in, so this is testable and nothing else in the package looks at the environment.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

#: What an Authorization header can carry as a key: printable ASCII without spaces.
_KEY = re.compile(r"[!-~]{1,512}")

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT = 30.0


class ConfigError(Exception):
    pass


@dataclass(frozen=True)
class CliConfig:
    url: str
    api_key: str | None
    timeout: float
    source: str  # where the key came from, for error messages


def default_config_path(env: Mapping[str, str]) -> Path:
    """$ASSAY_CONFIG, else $XDG_CONFIG_HOME/assay/config.toml, else ~/.config/assay/config.toml."""
    if env.get("ASSAY_CONFIG"):
        return Path(env["ASSAY_CONFIG"]).expanduser()
    base = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else Path(env.get("HOME", "~")) / ".config"
    return (base / "assay" / "config.toml").expanduser()


def read_config_file(path: Path, required: bool) -> dict[str, Any]:
    """`url`, `api_key`, `timeout` at the top level. A missing file is fine unless it was named explicitly."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        if required:
            raise ConfigError(f"config file {path} does not exist") from None
        return {}
    try:
        data = tomllib.loads(raw.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    unknown = set(data) - {"url", "api_key", "timeout"}
    if unknown:
        raise ConfigError(f"config file {path}: unknown keys {sorted(unknown)} (known: url, api_key, timeout)")
    return data


def resolve(
    *,
    url: str | None,
    api_key: str | None,
    timeout: float | None,
    config_path: str | None,
    env: Mapping[str, str],
) -> CliConfig:
    path = Path(config_path).expanduser() if config_path else default_config_path(env)
    file = read_config_file(path, required=bool(config_path or env.get("ASSAY_CONFIG")))
    if api_key:
        key, source = api_key, "--api-key"
    elif env.get("ASSAY_API_KEY"):
        key, source = env["ASSAY_API_KEY"], "ASSAY_API_KEY"
    elif file.get("api_key"):
        key, source = str(file["api_key"]), str(path)
    else:
        key, source = None, ""
    try:
        seconds = float(timeout if timeout is not None else file.get("timeout", DEFAULT_TIMEOUT))
    except (TypeError, ValueError):
        raise ConfigError(f"config file {path}: timeout must be a number of seconds") from None
    if not 0 < seconds < float("inf"):
        raise ConfigError(f"the timeout must be a positive number of seconds, not {seconds:g}")
    base = str(url or env.get("ASSAY_URL") or file.get("url") or DEFAULT_URL).rstrip("/")
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"the API URL must look like http://host:8000, not {base!r}")
    if key is not None:
        key = key.strip()  # a key read from a file often ends in a newline
        if not _KEY.fullmatch(key):
            raise ConfigError(f"the API key from {source} holds characters no key has (printable ASCII, no spaces)")
    return CliConfig(url=base, api_key=key or None, timeout=seconds, source=source)
