"""Academy: per-secret keys, grants of secrets to agents, and the record of each use.

Secrets stored before this revision have no per-secret key. Reading one of their built-in values
fails closed (CiphertextInvalid with reason key_missing): store those values again as new
secrets. Values kept by an external backend need no per-secret key.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 23:00:17.728913
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "secret_grants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("secret_id", sa.Integer(), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=False),
        sa.Column("purpose", sa.String(length=80), nullable=False),
        sa.Column("granted_by_user_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
            name=op.f("fk_secret_grants_agent_id_agents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["granted_by_user_id"],
            ["users.id"],
            name=op.f("fk_secret_grants_granted_by_user_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["secret_id"],
            ["secrets.id"],
            name=op.f("fk_secret_grants_secret_id_secrets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_secret_grants")),
        sa.UniqueConstraint(
            "secret_id", "agent_id", "purpose", name="uq_secret_grants_secret_agent_purpose"
        ),
    )
    with op.batch_alter_table("secret_grants", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_secret_grants_agent_id"), ["agent_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_secret_grants_secret_id"), ["secret_id"], unique=False)

    op.create_table(
        "secret_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("secret_id", sa.Integer(), nullable=False),
        sa.Column("envelope", sa.LargeBinary(), nullable=False),
        sa.Column("kek_id", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["secret_id"],
            ["secrets.id"],
            name=op.f("fk_secret_keys_secret_id_secrets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_secret_keys")),
        sa.UniqueConstraint("secret_id", name=op.f("uq_secret_keys_secret_id")),
    )
    with op.batch_alter_table("secret_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_secret_keys_kek_id"), ["kek_id"], unique=False)

    op.create_table(
        "secret_uses",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("secret_id", sa.Integer(), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("purpose", sa.String(length=80), nullable=False),
        sa.Column("session_ref", sa.String(length=128), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
            name=op.f("fk_secret_uses_agent_id_agents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["secret_id"],
            ["secrets.id"],
            name=op.f("fk_secret_uses_secret_id_secrets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_secret_uses")),
    )
    with op.batch_alter_table("secret_uses", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_secret_uses_agent_id"), ["agent_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_secret_uses_secret_id"), ["secret_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("secret_uses", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_secret_uses_secret_id"))
        batch_op.drop_index(batch_op.f("ix_secret_uses_agent_id"))

    op.drop_table("secret_uses")
    with op.batch_alter_table("secret_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_secret_keys_kek_id"))

    op.drop_table("secret_keys")
    with op.batch_alter_table("secret_grants", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_secret_grants_secret_id"))
        batch_op.drop_index(batch_op.f("ix_secret_grants_agent_id"))

    op.drop_table("secret_grants")
