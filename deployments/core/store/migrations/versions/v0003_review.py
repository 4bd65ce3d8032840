"""The worklist: review state as columns of ``cases`` (status, due_at, claimed/resolved by and at).

Columns rather than a table of their own, because a case has exactly one review state: the
writer records a case and its deadline in the one insert it already makes, off the request
path, and a claim is one conditional UPDATE of one row, which is what makes ``POST
/review/next`` atomic on SQLite (under ``BEGIN IMMEDIATE``) and PostgreSQL (``FOR UPDATE
SKIP LOCKED``) alike. One index in the worklist's order (status, escalated first, due, age)
serves the claim and the listing.

Cases recorded before this revision that went to review (or were escalated) enter the
worklist open, due by the default deadlines (``ReviewDeadlinesArgs``): the migration cannot
read the app's config.

Revision ID: 0003
Revises: 0002
"""

from datetime import timedelta, timezone

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)
CHUNK = 1000


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("review_status", sa.String(16)))
        batch.add_column(sa.Column("due_at", TZ))
        batch.add_column(sa.Column("claimed_by", sa.String(200)))
        batch.add_column(sa.Column("claimed_at", TZ))
        batch.add_column(sa.Column("resolved_by", sa.String(200)))
        batch.add_column(sa.Column("resolved_at", TZ))
    # In the worklist's order (escalated first), so the next case is the first entry of an index scan.
    op.create_index("ix_cases_worklist", "cases",
                    ["review_status", sa.text("escalate DESC"), "due_at", "created_at", "id"])
    _backfill()


def _backfill() -> None:
    from deployments.core.review import Deadlines

    deadlines, bind = Deadlines(), op.get_bind()
    cases = sa.table("cases", sa.column("id"), sa.column("created_at", TZ), sa.column("escalate", sa.Boolean),
                     sa.column("priority", sa.Integer), sa.column("human_review", sa.Boolean),
                     sa.column("review_status"), sa.column("due_at", TZ))
    rows = bind.execute(sa.select(cases.c.id, cases.c.created_at, cases.c.escalate, cases.c.priority)
                        .where(sa.or_(cases.c.human_review.is_(True), cases.c.escalate.is_(True)))).all()
    update = (sa.update(cases).where(cases.c.id == sa.bindparam("case_id"))
              .values(review_status="open", due_at=sa.bindparam("due")))
    for start in range(0, len(rows), CHUNK):
        values = []
        for case_id, created_at, escalate, priority in rows[start:start + CHUNK]:
            created = created_at if created_at.tzinfo else created_at.replace(tzinfo=timezone.utc)
            values.append({"case_id": case_id, "due": created + timedelta(
                seconds=deadlines.seconds(bool(escalate), int(priority)))})
        bind.execute(update, values)


def downgrade() -> None:
    op.drop_index("ix_cases_worklist", table_name="cases")
    with op.batch_alter_table("cases") as batch:
        for name in ("resolved_at", "resolved_by", "claimed_at", "claimed_by", "due_at", "review_status"):
            batch.drop_column(name)
