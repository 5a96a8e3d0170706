"""webhooks: per-tenant signing secrets, a job's webhook, events (one per job and type) and attempts

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

import base64
import secrets

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def upgrade() -> None:
    op.add_column("tenants", sa.Column("webhook_secret", sa.String(100)))
    op.add_column("tenants", sa.Column("webhook_secret_previous", sa.String(100)))
    op.add_column("tenants", sa.Column("webhook_secret_previous_until", TS))
    conn = op.get_bind()
    for (tenant_id,) in conn.execute(sa.text("SELECT id FROM tenants")):
        conn.execute(
            sa.text("UPDATE tenants SET webhook_secret = :s WHERE id = :id"), {"s": new_secret(), "id": tenant_id}
        )
    op.alter_column("tenants", "webhook_secret", nullable=False)

    op.add_column("jobs", sa.Column("webhook", postgresql.JSONB()))

    op.create_table(
        "webhook_events",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("job_id", sa.String(40), nullable=False),
        sa.Column("owner", sa.String(40), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("payload", postgresql.JSONB(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("next_attempt_at", TS, server_default=sa.func.now()),
        sa.Column("locked_until", TS),
        sa.Column("last_error", sa.Text()),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("delivered_at", TS),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_events"),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name="fk_webhook_events_job_id_jobs", ondelete="CASCADE"),
        sa.UniqueConstraint("job_id", "type", name="uq_webhook_events_job_id_type"),
        sa.CheckConstraint(
            "status IN ('pending', 'delivering', 'delivered', 'failed', 'stopped')", name="ck_webhook_events_status"
        ),
    )
    op.create_index(
        "ix_webhook_events_due",
        "webhook_events",
        ["next_attempt_at"],
        postgresql_where=sa.text("status IN ('pending', 'delivering')"),
    )
    op.create_table(
        "webhook_attempts",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("event_id", sa.String(40), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("status_code", sa.Integer()),
        sa.Column("latency_ms", sa.Integer()),
        sa.Column("error", sa.Text()),
        sa.Column("next_attempt_at", TS),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_attempts"),
        sa.ForeignKeyConstraint(
            ["event_id"], ["webhook_events.id"], name="fk_webhook_attempts_event_id_webhook_events", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_webhook_attempts_event_id", "webhook_attempts", ["event_id", "attempt"])


def downgrade() -> None:
    op.drop_table("webhook_attempts")
    op.drop_table("webhook_events")
    op.drop_column("jobs", "webhook")
    for column in ("webhook_secret_previous_until", "webhook_secret_previous", "webhook_secret"):
        op.drop_column("tenants", column)
