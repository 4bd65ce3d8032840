"""Live call sessions: the state of each open call between its pieces, and on the call's case record
its timeline of label changes and the time it escalated.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "call_sessions",
        sa.Column("call_id", sa.String(128), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("state", sa.JSON, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_call_sessions_status_updated", "call_sessions", ["status", "updated_at"])
    op.add_column("cases", sa.Column("call_timeline", sa.JSON))
    op.add_column("cases", sa.Column("escalated_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    op.drop_column("cases", "escalated_at")
    op.drop_column("cases", "call_timeline")
    op.drop_index("ix_call_sessions_status_updated", table_name="call_sessions")
    op.drop_table("call_sessions")
