"""Alembic's environment: run by ``CaseStore.migrate`` on the connection it passes in.

Importing it outside a migration (the layout test imports every module) does nothing.
"""

from alembic import context

from deployments.core.store.tables import Base


def run_migrations(connection) -> None:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


_config = getattr(context, "config", None)  # set only while Alembic runs this script
if _config is not None:
    run_migrations(_config.attributes["connection"])
