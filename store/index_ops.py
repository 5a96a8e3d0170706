"""What migrations that add an index to a large table share: an index an operator may have built first."""

from __future__ import annotations

from typing import Any


def drop_index_if_invalid(op: Any, name: str) -> None:
    """An index an operator built first, CONCURRENTLY (docs/OPERATIONS.md, Upgrade), that failed half-way is
    left INVALID under its name: `if_not_exists` would keep it, and the planner never uses it. Dropped here,
    so the migration builds it again."""
    op.execute(
        f"""DO $$ BEGIN
        IF EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                   WHERE c.relname = '{name}' AND NOT i.indisvalid) THEN DROP INDEX {name}; END IF;
        END $$"""
    )
