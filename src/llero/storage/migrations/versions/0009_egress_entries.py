"""Egress entries: hosts and endpoints that admins allow beyond the settings.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 00:20:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "egress_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("value", sa.String(length=261), nullable=False),
        sa.Column("created_by_user_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by_user_id"],
            ["users.id"],
            name=op.f("fk_egress_entries_created_by_user_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_egress_entries")),
        sa.UniqueConstraint("kind", "value", name="uq_egress_entries_kind_value"),
    )


def downgrade() -> None:
    op.drop_table("egress_entries")
