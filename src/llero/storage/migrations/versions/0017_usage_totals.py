"""Add daily usage totals per user, per agent and overall, filled from the usage records.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-05 06:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_totals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subject", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("agent_id", sa.Integer(), nullable=True),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("cost_micros", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
            name=op.f("fk_usage_totals_agent_id_agents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_usage_totals_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_totals")),
        sa.UniqueConstraint("subject", "day", name="uq_usage_totals_subject_day"),
    )
    op.create_index(op.f("ix_usage_totals_agent_id"), "usage_totals", ["agent_id"])
    op.create_index(op.f("ix_usage_totals_user_id"), "usage_totals", ["user_id"])
    # The records of deleted users and agents name neither any more; they count overall only.
    op.execute(
        "INSERT INTO usage_totals (subject, user_id, agent_id, day, cost_micros) "
        "SELECT 'overall', NULL, NULL, day, SUM(cost_micros) FROM usage_records GROUP BY day"
    )
    op.execute(
        "INSERT INTO usage_totals (subject, user_id, agent_id, day, cost_micros) "
        "SELECT 'user:' || CAST(user_id AS VARCHAR(16)), user_id, NULL, day, SUM(cost_micros) "
        "FROM usage_records WHERE user_id IS NOT NULL GROUP BY user_id, day"
    )
    op.execute(
        "INSERT INTO usage_totals (subject, user_id, agent_id, day, cost_micros) "
        "SELECT 'agent:' || CAST(agent_id AS VARCHAR(16)), NULL, agent_id, day, SUM(cost_micros) "
        "FROM usage_records WHERE agent_id IS NOT NULL GROUP BY agent_id, day"
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_usage_totals_user_id"), table_name="usage_totals")
    op.drop_index(op.f("ix_usage_totals_agent_id"), table_name="usage_totals")
    op.drop_table("usage_totals")
