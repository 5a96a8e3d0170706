"""result cache and in-flight coalescing: jobs.options, jobs.cache_key, jobs.coalesced_into, table result_cache

Revision ID: 0008
Revises: 0007_console
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from store.index_ops import drop_index_if_invalid

revision = "0008"
down_revision = "0007_console"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    drop_index_if_invalid(op, "ix_jobs_live_cache_key")
    drop_index_if_invalid(op, "ix_jobs_coalesced_into")
    op.add_column("jobs", sa.Column("options", JSONB(none_as_null=True)))
    # IF NOT EXISTS here and on the indexes: an operator may add them first (docs/OPERATIONS.md, Upgrade).
    op.add_column("jobs", sa.Column("cache_key", sa.String(64)), if_not_exists=True)
    op.add_column("jobs", sa.Column("coalesced_into", sa.String(40)), if_not_exists=True)
    op.create_index(
        "ix_jobs_live_cache_key",
        "jobs",
        ["cache_key"],
        postgresql_where=sa.text("status IN ('queued', 'running') AND coalesced_into IS NULL"),
        if_not_exists=True,
    )
    op.create_index(
        "ix_jobs_coalesced_into",
        "jobs",
        ["coalesced_into"],
        postgresql_where=sa.text("coalesced_into IS NOT NULL"),
        if_not_exists=True,
    )
    op.create_table(
        "result_cache",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("analysis", sa.String(64), nullable=False),
        sa.Column("source_job_id", sa.String(40), nullable=False),
        sa.Column("result", JSONB(), nullable=False),
        sa.Column("bytes", sa.Integer(), nullable=False),
        sa.Column("started_at", TS),
        sa.Column("completed_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_result_cache"),
        sa.ForeignKeyConstraint(
            ["source_job_id"], ["jobs.id"], name="fk_result_cache_source_job_id_jobs", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_result_cache_source_job_id", "result_cache", ["source_job_id"])
    op.create_index("ix_result_cache_completed_at", "result_cache", ["completed_at"])


def downgrade() -> None:
    op.drop_table("result_cache")
    op.drop_index("ix_jobs_coalesced_into", table_name="jobs")
    op.drop_index("ix_jobs_live_cache_key", table_name="jobs")
    op.drop_column("jobs", "coalesced_into")
    op.drop_column("jobs", "cache_key")
    op.drop_column("jobs", "options")
