"""Usage and budgets: a record of every provider call with its cost, and spending limits.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 23:53:56.375032
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_SUBJECT_RULE = "(scope = 'overall' AND subject_id = 0) OR (scope <> 'overall' AND subject_id > 0)"


def upgrade() -> None:
    op.create_table(
        "budgets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("subject_id", sa.Integer(), nullable=False),
        sa.Column("period", sa.String(length=8), nullable=False),
        sa.Column("amount_micros", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(_SUBJECT_RULE, name=op.f("ck_budgets_subject_matches_scope")),
        sa.CheckConstraint("amount_micros >= 0", name=op.f("ck_budgets_amount_not_negative")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_budgets")),
        sa.UniqueConstraint(
            "scope", "subject_id", "period", name="uq_budgets_scope_subject_period"
        ),
    )
    op.create_table(
        "usage_records",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("agent_id", sa.Integer(), nullable=True),
        sa.Column("session_id", sa.Integer(), nullable=True),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost_micros", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
            name=op.f("fk_usage_records_agent_id_agents"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_usage_records_user_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_records")),
    )
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.create_index(
            "ix_usage_records_agent_occurred", ["agent_id", "occurred_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_usage_records_day"), ["day"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_usage_records_occurred_at"), ["occurred_at"], unique=False
        )
        batch_op.create_index(
            "ix_usage_records_user_occurred", ["user_id", "occurred_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.drop_index("ix_usage_records_user_occurred")
        batch_op.drop_index(batch_op.f("ix_usage_records_occurred_at"))
        batch_op.drop_index(batch_op.f("ix_usage_records_day"))
        batch_op.drop_index("ix_usage_records_agent_occurred")
    op.drop_table("usage_records")
    op.drop_table("budgets")
