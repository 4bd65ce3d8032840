"""The case record and the counsellors' feedback, on SQLAlchemy 2 (SQLite or PostgreSQL).

* ``tables``: the schema (cases, feedback, feedback_history, audit_events, audit_cases); Alembic migrations
  under ``migrations/`` create and evolve it, run at startup by ``CaseStore``.
* ``repository``: ``CaseStore``, every read and write the service makes.
* ``writer``: ``RecordWriter``, the batching write queue that keeps case
  records off the request path.
* ``stats``: live accuracy from feedback rows, pure.
* ``worklist``: ``Worklist``, the supervisors' review state over the cases: list, atomic claim,
  release, resolve (``deployments/core/review.py`` holds its rules).
* ``audit_log``: the audit trail's rows (written by a second ``RecordWriter``), read
  newest first with filters and a cursor.
* ``report_counts``: case counts per UTC day and labels, for the anonymous reports.

Ray-free and HTTP-free; the Router deployment owns one ``CaseStore``.
"""
