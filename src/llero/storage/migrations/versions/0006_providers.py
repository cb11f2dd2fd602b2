"""Providers: their configurations and the models they serve, with prices.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 23:39:28.440417
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "providers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("protocol", sa.String(length=16), nullable=False),
        sa.Column("base_url", sa.String(length=2048), nullable=False),
        sa.Column("secret_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["secret_id"],
            ["secrets.id"],
            name=op.f("fk_providers_secret_id_secrets"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_providers")),
        sa.UniqueConstraint("name", name=op.f("uq_providers_name")),
    )
    with op.batch_alter_table("providers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_providers_secret_id"), ["secret_id"], unique=False)

    op.create_table(
        "provider_models",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("provider_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("input_micros_per_million", sa.BigInteger(), nullable=False),
        sa.Column("output_micros_per_million", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["providers.id"],
            name=op.f("fk_provider_models_provider_id_providers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_provider_models")),
        sa.UniqueConstraint("provider_id", "name", name="uq_provider_models_provider_name"),
    )
    with op.batch_alter_table("provider_models", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_provider_models_provider_id"), ["provider_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("provider_models", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_provider_models_provider_id"))
    op.drop_table("provider_models")
    with op.batch_alter_table("providers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_providers_secret_id"))
    op.drop_table("providers")
