"""per-tenant overrides of rate limits and the queued-job quota (issue 14)

Revision ID: 0007_console
Revises: 0006
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_console"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tenant_limits",
        sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("rate_requests", sa.Integer),
        sa.Column("rate_requests_window_seconds", sa.Integer),
        sa.Column("rate_jobs_per_minute", sa.Integer),
        sa.Column("max_open_waits_per_key", sa.Integer),
        sa.Column("tenant_max_queued_jobs", sa.Integer),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint(
            "coalesce(rate_requests, 1) >= 1 AND coalesce(rate_requests_window_seconds, 1) >= 1"
            " AND coalesce(rate_jobs_per_minute, 1) >= 1 AND coalesce(max_open_waits_per_key, 1) >= 1"
            " AND coalesce(tenant_max_queued_jobs, 1) >= 1",
            name="tenant_limits_positive",
        ),
    )


def downgrade() -> None:
    op.drop_table("tenant_limits")
