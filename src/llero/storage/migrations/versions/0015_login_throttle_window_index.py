"""Index login_throttles.window_started_at, which the purge of expired throttle rows searches.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05 03:30:00.000000
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        op.f("ix_login_throttles_window_started_at"), "login_throttles", ["window_started_at"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_login_throttles_window_started_at"), table_name="login_throttles")
