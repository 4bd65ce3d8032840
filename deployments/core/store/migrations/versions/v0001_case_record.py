"""The case record, feedback and its history.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "cases",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("request_id", sa.String(128), index=True),
        sa.Column("task_id", sa.String(128), index=True),
        sa.Column("call_id", sa.String(128), index=True),
        sa.Column("batch_index", sa.Integer),
        sa.Column("created_at", TZ, nullable=False, index=True),
        sa.Column("model_id", sa.String(512), nullable=False),
        sa.Column("model_revision", sa.String(128)),
        *[sa.Column(name, sa.String(200), nullable=False)
          for name in ("main_category", "sub_category", "sub_category_2", "intervention")],
        sa.Column("priority", sa.Integer, nullable=False),
        *[sa.Column(f"{name}_confidence", sa.Float, nullable=False)
          for name in ("main_category", "sub_category", "sub_category_2", "intervention", "priority")],
        sa.Column("queue", sa.String(200), nullable=False),
        sa.Column("escalate", sa.Boolean, nullable=False),
        sa.Column("human_review", sa.Boolean, nullable=False),
        sa.Column("reasons", sa.JSON, nullable=False),
        sa.Column("chunks", sa.Integer, nullable=False),
        sa.Column("tokens", sa.Integer, nullable=False),
        sa.Column("truncated", sa.Boolean, nullable=False),
        sa.Column("chunk_details", sa.JSON, nullable=False),
        sa.Column("narrative", sa.Text),
    )
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.String(36), sa.ForeignKey("cases.id", ondelete="CASCADE"), nullable=False,
                  index=True),
        sa.Column("task", sa.String(32), nullable=False),
        sa.Column("call_id", sa.String(128), index=True),
        sa.Column("corrections", sa.JSON, nullable=False),
        sa.Column("rating", sa.Integer),
        sa.Column("reason", sa.Text),
        sa.Column("reviewer", sa.String(200)),
        sa.Column("narrative", sa.Text),
        sa.Column("model_id", sa.String(512), nullable=False),
        sa.Column("model_revision", sa.String(128)),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False, index=True),
        sa.UniqueConstraint("case_id", "task", name="uq_feedback_case_task"),
    )
    op.create_table(
        "feedback_history",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("feedback_id", sa.Integer, sa.ForeignKey("feedback.id", ondelete="CASCADE"), nullable=False,
                  index=True),
        sa.Column("case_id", sa.String(36), nullable=False),
        sa.Column("task", sa.String(32), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("corrections", sa.JSON, nullable=False),
        sa.Column("rating", sa.Integer),
        sa.Column("reason", sa.Text),
        sa.Column("reviewer", sa.String(200)),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("recorded_at", TZ, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("feedback_history")
    op.drop_table("feedback")
    op.drop_table("cases")
