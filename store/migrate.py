"""`python -m store.migrate [upgrade|downgrade|current] [rev]`: Alembic, configured from Settings.

Migrations run from this command (make migrate, make run, make test), never on import.
"""

from __future__ import annotations

import sys
from pathlib import Path

from alembic import command
from alembic.config import Config

from config import Settings, get_settings
from config.settings import run_command

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(settings: Settings) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["database_url"] = settings.database_url
    cfg.attributes["settings"] = settings  # data migrations that need more (the secrets key) read it here
    return cfg


def upgrade(settings: Settings, revision: str = "head") -> None:
    command.upgrade(alembic_config(settings), revision)


def main(argv: list[str]) -> int:
    action = argv[0] if argv else "upgrade"
    cfg = alembic_config(get_settings())
    if action == "upgrade":
        command.upgrade(cfg, argv[1] if len(argv) > 1 else "head")
    elif action == "downgrade":
        command.downgrade(cfg, argv[1] if len(argv) > 1 else "-1")
    elif action == "current":
        command.current(cfg)
    else:
        print(f"unknown action {action!r}: use upgrade, downgrade or current", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, sys.argv[1:]))
