"""Incident response: the one-row system_state table (global token not-before and lockdown).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 23:10:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "system_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tokens_not_before", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lockdown", sa.Boolean(), nullable=False),
        sa.Column("lockdown_reason", sa.String(length=200), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_system_state_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_system_state")),
    )


def downgrade() -> None:
    op.drop_table("system_state")
