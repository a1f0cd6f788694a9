"""Alembic's environment: migrations run on the connection ``migrate.upgrade`` passes, inside
the transaction (and under the lock) it holds."""

from __future__ import annotations

from alembic import context

from openecr.backends.sql.schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    transaction_per_migration=False,
)
with context.begin_transaction():
    context.run_migrations()
