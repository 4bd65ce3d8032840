"""The evidence behind each routing decision (source, category, offsets; never the words) and the
narrative's language code.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Records written before this revision have no signals: an empty list, never null.
    op.add_column("cases", sa.Column("signals", sa.JSON, nullable=False, server_default=sa.text("'[]'")))
    op.add_column("cases", sa.Column("language", sa.String(16)))


def downgrade() -> None:
    op.drop_column("cases", "language")
    op.drop_column("cases", "signals")
