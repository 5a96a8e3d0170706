"""job_blobs: uploaded audio, stored beside its job

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job_blobs",
        sa.Column("job_id", sa.String(40), nullable=False),
        sa.Column("content_type", sa.String(100), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("job_id", name="pk_job_blobs"),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name="fk_job_blobs_job_id_jobs", ondelete="CASCADE"),
    )
    # Audio is already compressed: skip TOAST's pglz attempt, keep out-of-line storage.
    op.execute("ALTER TABLE job_blobs ALTER COLUMN data SET STORAGE EXTERNAL")


def downgrade() -> None:
    op.drop_table("job_blobs")
