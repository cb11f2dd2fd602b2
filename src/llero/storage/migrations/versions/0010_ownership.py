"""Ownership and sharing of tools and agents: owner columns and the share tables.

Rows that exist before this migration get no owner, so they belong to the system and only
admins see them until an admin shares them.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 22:57:17.821881
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agent_shares",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("everyone", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "(everyone AND user_id IS NULL) OR (NOT everyone AND user_id IS NOT NULL)",
            name=op.f("ck_agent_shares_user_or_everyone"),
        ),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
            name=op.f("fk_agent_shares_agent_id_agents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_agent_shares_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_shares")),
        sa.UniqueConstraint("agent_id", "user_id", name="uq_agent_shares_agent_user"),
    )
    with op.batch_alter_table("agent_shares", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_agent_shares_agent_id"), ["agent_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_agent_shares_user_id"), ["user_id"], unique=False)

    op.create_table(
        "tool_shares",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tool_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("everyone", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "(everyone AND user_id IS NULL) OR (NOT everyone AND user_id IS NOT NULL)",
            name=op.f("ck_tool_shares_user_or_everyone"),
        ),
        sa.ForeignKeyConstraint(
            ["tool_id"], ["tools.id"], name=op.f("fk_tool_shares_tool_id_tools"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_tool_shares_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tool_shares")),
        sa.UniqueConstraint("tool_id", "user_id", name="uq_tool_shares_tool_user"),
    )
    with op.batch_alter_table("tool_shares", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_tool_shares_tool_id"), ["tool_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_tool_shares_user_id"), ["user_id"], unique=False)

    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("owner_user_id", sa.Integer(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_agents_owner_user_id"), ["owner_user_id"], unique=False
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_agents_owner_user_id_users"),
            "users",
            ["owner_user_id"],
            ["id"],
            ondelete="SET NULL",
        )

    with op.batch_alter_table("categories", schema=None) as batch_op:
        batch_op.add_column(sa.Column("owner_user_id", sa.Integer(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_categories_owner_user_id"), ["owner_user_id"], unique=False
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_categories_owner_user_id_users"),
            "users",
            ["owner_user_id"],
            ["id"],
            ondelete="SET NULL",
        )

    with op.batch_alter_table("tools", schema=None) as batch_op:
        batch_op.add_column(sa.Column("owner_user_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_tools_owner_user_id"), ["owner_user_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_tools_owner_user_id_users"),
            "users",
            ["owner_user_id"],
            ["id"],
            ondelete="SET NULL",
        )


def downgrade() -> None:
    with op.batch_alter_table("tools", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_tools_owner_user_id_users"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_tools_owner_user_id"))
        batch_op.drop_column("owner_user_id")

    with op.batch_alter_table("categories", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_categories_owner_user_id_users"), type_="foreignkey"
        )
        batch_op.drop_index(batch_op.f("ix_categories_owner_user_id"))
        batch_op.drop_column("owner_user_id")

    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_agents_owner_user_id_users"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_agents_owner_user_id"))
        batch_op.drop_column("owner_user_id")

    with op.batch_alter_table("tool_shares", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tool_shares_user_id"))
        batch_op.drop_index(batch_op.f("ix_tool_shares_tool_id"))

    op.drop_table("tool_shares")
    with op.batch_alter_table("agent_shares", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_agent_shares_user_id"))
        batch_op.drop_index(batch_op.f("ix_agent_shares_agent_id"))

    op.drop_table("agent_shares")
