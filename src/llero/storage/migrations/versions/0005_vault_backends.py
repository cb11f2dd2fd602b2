"""Vault backends: a secret version names the backend that keeps its value, and its reference.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 23:05:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_CONSTRAINT = "ck_secret_versions_envelope_unless_destroyed"
_BUILTIN_ONLY = (
    "(destroyed AND envelope IS NULL AND kek_id IS NULL) OR "
    "(NOT destroyed AND envelope IS NOT NULL AND kek_id IS NOT NULL)"
)
_WITH_BACKENDS = (
    "(backend = 'builtin' AND destroyed AND envelope IS NULL AND kek_id IS NULL) OR "
    "(backend = 'builtin' AND NOT destroyed AND envelope IS NOT NULL AND kek_id IS NOT NULL) OR "
    "(backend <> 'builtin' AND envelope IS NULL AND kek_id IS NULL AND reference IS NOT NULL)"
)


def upgrade() -> None:
    with op.batch_alter_table("secret_versions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("backend", sa.String(length=16), server_default="builtin", nullable=False)
        )
        batch_op.add_column(sa.Column("reference", sa.String(length=512), nullable=True))
        batch_op.drop_constraint(batch_op.f(_CONSTRAINT), type_="check")
        batch_op.create_check_constraint("envelope_unless_destroyed", _WITH_BACKENDS)


def downgrade() -> None:
    # Rows of external backends have no envelope, so they cannot satisfy the old rule.
    op.execute("DELETE FROM secret_versions WHERE backend <> 'builtin'")
    with op.batch_alter_table("secret_versions", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f(_CONSTRAINT), type_="check")
        batch_op.create_check_constraint("envelope_unless_destroyed", _BUILTIN_ONLY)
        batch_op.drop_column("reference")
        batch_op.drop_column("backend")
