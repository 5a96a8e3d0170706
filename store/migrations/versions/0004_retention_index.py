"""an index for the retention sweep: finished jobs not yet erased, by completion time

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

from store.index_ops import drop_index_if_invalid

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    drop_index_if_invalid(op, "ix_jobs_retention")
    op.create_index(
        "ix_jobs_retention",
        "jobs",
        ["completed_at"],
        postgresql_where=sa.text("erased_at IS NULL AND status IN ('succeeded', 'failed', 'canceled')"),
        if_not_exists=True,  # an operator may build it first, CONCURRENTLY (docs/OPERATIONS.md, Upgrade)
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_retention", table_name="jobs")
