"""webhook signing secrets in a table of their own, encrypted, with every previous one kept while it signs

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def _box():
    """The secrets box from the settings the migration runs with (store.migrate passes them)."""
    from alembic import context

    from store.secrets_box import SecretBox

    return SecretBox(context.config.attributes["settings"].secrets_key_list)


def upgrade() -> None:
    op.create_table(
        "webhook_secrets",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("tenant_id", sa.String(40), nullable=False),
        sa.Column("encrypted", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("expires_at", TS),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_secrets"),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name="fk_webhook_secrets_tenant_id_tenants", ondelete="CASCADE"
        ),
    )
    op.create_index(
        "uq_webhook_secrets_current",
        "webhook_secrets",
        ["tenant_id"],
        unique=True,
        postgresql_where=sa.text("expires_at IS NULL"),
    )
    conn = op.get_bind()
    rows = conn.execute(
        sa.text(
            "SELECT id, webhook_secret, webhook_secret_previous, webhook_secret_previous_until FROM tenants"
            " WHERE webhook_secret IS NOT NULL"
        )
    ).all()
    if rows:
        box = _box()
        for tenant_id, current, previous, until in rows:
            if previous and until is not None:
                conn.execute(
                    sa.text("INSERT INTO webhook_secrets (tenant_id, encrypted, expires_at) VALUES (:t, :e, :x)"),
                    {"t": tenant_id, "e": box.encrypt(previous), "x": until},
                )
            conn.execute(
                sa.text("INSERT INTO webhook_secrets (tenant_id, encrypted) VALUES (:t, :e)"),
                {"t": tenant_id, "e": box.encrypt(current)},
            )
    for column in ("webhook_secret_previous_until", "webhook_secret_previous", "webhook_secret"):
        op.drop_column("tenants", column)


def downgrade() -> None:
    op.add_column("tenants", sa.Column("webhook_secret", sa.String(100)))
    op.add_column("tenants", sa.Column("webhook_secret_previous", sa.String(100)))
    op.add_column("tenants", sa.Column("webhook_secret_previous_until", TS))
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT tenant_id, encrypted FROM webhook_secrets WHERE expires_at IS NULL")).all()
    if rows:
        box = _box()
        for tenant_id, encrypted in rows:
            conn.execute(
                sa.text("UPDATE tenants SET webhook_secret = :s WHERE id = :t"),
                {"s": box.decrypt(encrypted), "t": tenant_id},
            )
    op.drop_table("webhook_secrets")
