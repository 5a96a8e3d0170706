"""the broker epoch each queued job and pending webhook event was published under

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL: no message is believed to be in the broker; the sweeper publishes one.
    op.add_column("jobs", sa.Column("publish_epoch", sa.String(32)))
    op.add_column("webhook_events", sa.Column("publish_epoch", sa.String(32)))
    op.add_column("webhook_events", sa.Column("published_at", sa.DateTime(timezone=True)))
    # Rows that predate epochs were published by the old path: leave them to the sweeper once.
    op.execute("UPDATE webhook_events SET locked_until = NULL WHERE status = 'pending'")


def downgrade() -> None:
    op.drop_column("webhook_events", "published_at")
    op.drop_column("webhook_events", "publish_epoch")
    op.drop_column("jobs", "publish_epoch")
