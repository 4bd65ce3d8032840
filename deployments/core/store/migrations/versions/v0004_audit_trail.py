"""The audit trail: one row per audited call, and its case ids for the search by case.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("at", TZ, nullable=False, index=True),
        sa.Column("key_name", sa.String(200), index=True),
        sa.Column("role", sa.String(32)),
        sa.Column("route", sa.String(200), nullable=False, index=True),
        sa.Column("permission", sa.String(32), nullable=False),
        sa.Column("subject", sa.String(128), index=True),
        sa.Column("case_ids", sa.JSON, nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("error_code", sa.String(64)),
        sa.Column("request_id", sa.String(128)),
    )
    op.create_table(
        "audit_cases",
        sa.Column("event_id", sa.String(32), sa.ForeignKey("audit_events.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("case_id", sa.String(128), primary_key=True, index=True),
    )


def downgrade() -> None:
    op.drop_table("audit_cases")
    op.drop_table("audit_events")
