"""Schema migrations (Alembic, ``migrations/``): run once, under a database lock, however many
processes or replicas open the database at the same moment.

The lock: PostgreSQL's transaction-scoped advisory lock ``MIGRATION_LOCK_KEY``, and PostgreSQL
runs all pending migrations in that one transaction (its DDL is transactional); SQLite's write
lock (``BEGIN IMMEDIATE``). A process that waited for the lock finds the schema current and
does nothing.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, func, select

MIGRATION_LOCK_KEY = 0x6F70656E656373  # "openecs": the advisory lock migrations run under

SCRIPT_LOCATION = Path(__file__).parent / "migrations"


def _config(conn: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    if conn is not None:
        config.attributes["connection"] = conn
    return config


def head() -> str:
    """The newest migration's revision."""
    found = ScriptDirectory.from_config(_config()).get_current_head()
    assert found is not None
    return found


def current(conn: Connection) -> str | None:
    """The revision the database is at (None: never migrated)."""
    return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Bring the database to the newest revision; returns (revision before, revision after).
    ``engine`` begins write transactions (SQLite: ``BEGIN IMMEDIATE``)."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(select(func.pg_advisory_xact_lock(MIGRATION_LOCK_KEY)))
        before = current(conn)
        target = head()
        if before != target:
            command.upgrade(_config(conn), "head")
        return before, target
