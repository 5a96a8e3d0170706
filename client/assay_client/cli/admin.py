"""`assay keys`: API key administration straight against PostgreSQL, through the server's own `store.keys`.

Only this needs the server code, and it is imported here, at use, so the client package installs and
runs without it. Run from the server's checkout (its folder is put on the path if `store/` is there) or
with PYTHONPATH pointing at it; DATABASE_URL selects the database, as for `python -m store.cli`.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import click


class ServerCodeMissingError(Exception):
    pass


class AdminError(click.ClickException):
    """What the operator fixes (bad settings, the database not answering): one line, not a traceback."""


def server_modules(cwd: Path) -> SimpleNamespace:
    """The server's settings, engine and key functions; a clear error if its code is not importable."""
    try:
        return _import()
    except ImportError as first:
        if (cwd / "store" / "keys.py").is_file() and str(cwd) not in sys.path:
            sys.path.insert(0, str(cwd))
            with contextlib.suppress(ImportError):
                return _import()
        raise ServerCodeMissingError(
            "`assay keys` talks to the database through the Assay server code (store.keys), which cannot be "
            f"imported here ({first}). Run it from the server's checkout with the server's virtualenv, or set "
            "PYTHONPATH to that checkout."
        ) from None


def _import() -> SimpleNamespace:
    from config import get_settings
    from config.settings import SettingsError, unreachable_reason
    from store.db import make_engine
    from store.keys import create_key, list_keys, revoke_key

    return SimpleNamespace(
        get_settings=get_settings,
        settings_error=SettingsError,
        unreachable_reason=unreachable_reason,
        make_engine=make_engine,
        create_key=create_key,
        list_keys=list_keys,
        revoke_key=revoke_key,
    )


@contextlib.contextmanager
def transaction(server: SimpleNamespace) -> Iterator[object]:
    """One connection in one transaction, the engine disposed after: a CLI call is one unit of work."""
    try:
        engine = server.make_engine(server.get_settings(), pool_size=1)
    except server.settings_error as exc:
        raise AdminError(str(exc)) from None
    try:
        with engine.begin() as conn:
            yield conn
    except Exception as exc:
        reason = server.unreachable_reason(exc)
        if reason is None:
            raise
        raise AdminError(reason) from None
    finally:
        engine.dispose()
