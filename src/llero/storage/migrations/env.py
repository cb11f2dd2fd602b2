"""Alembic environment: runs against the connection that ``llero.storage.migrate`` hands in."""

from alembic import context

from llero.storage.registry import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
