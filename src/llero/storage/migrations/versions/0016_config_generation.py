"""Add the configuration generation and the triggers that count every change of configuration.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05 06:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

from llero.storage.generation import (
    POSTGRES_FUNCTION,
    ROW_ID,
    drop_trigger_statements,
    trigger_statements,
)

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

# The tables of revision 0016 that llero.storage.generation watches. A later migration that
# adds a table adds its triggers too.
WATCHED = (
    "agent_shares",
    "agent_tools",
    "agents",
    "budgets",
    "categories",
    "egress_entries",
    "kek_rotations",
    "provider_models",
    "providers",
    "secret_grants",
    "secret_keys",
    "secret_versions",
    "secrets",
    "system_state",
    "tool_runners",
    "tool_shares",
    "tool_versions",
    "tools",
)
# The columns of secret_versions whose change counts: all but last_used_at, which every use of a
# secret sets once a minute.
SECRET_VERSION_COLUMNS = (
    "id",
    "secret_id",
    "version",
    "envelope",
    "kek_id",
    "backend",
    "reference",
    "hint",
    "created_at",
    "rotated_at",
    "expires_at",
    "destroyed",
    "destroyed_at",
)


def upgrade() -> None:
    table = op.create_table(
        "config_generation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(f"id = {ROW_ID}", name=op.f("ck_config_generation_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_config_generation")),
    )
    op.bulk_insert(table, [{"id": ROW_ID, "value": 1}])
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(POSTGRES_FUNCTION)
    for name in WATCHED:
        columns = SECRET_VERSION_COLUMNS if name == "secret_versions" else None
        for statement in trigger_statements(dialect, name, columns):
            op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for name in WATCHED:
        for statement in drop_trigger_statements(dialect, name):
            op.execute(statement)
    if dialect == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS bump_config_generation()")
    op.drop_table("config_generation")
