"""Schema migrations (Alembic, ``migrations/``): run once, under a database lock, however many
processes or replicas open the database at the same moment.

The lock: PostgreSQL's transaction-scoped advisory lock ``MIGRATION_LOCK_KEY``, and PostgreSQL
runs all pending migrations in that one transaction (its DDL is transactional); SQLite's write
lock (``BEGIN IMMEDIATE``). A process that waited for the lock finds the schema current and
does nothing.

Alembic (10 MB of modules with Mako and Pygments) is imported only to migrate an existing
database: the revision is read with one query, and an empty database gets ``schema``'s tables
(``create_all``, the same tables the migrations make: tests/test_migrations.py compares them)
stamped with :data:`HEAD`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    func,
    insert,
    inspect,
    select,
)
from sqlalchemy.exc import OperationalError

from openecr.backends.sql.schema import metadata

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATION_LOCK_KEY = 0x6F70656E656373  # "openecs": the advisory lock migrations run under

SCRIPT_LOCATION = Path(__file__).parent / "migrations"

# the newest migration's revision (tests/test_migrations.py holds it to migrations/)
HEAD = "0004"

# Alembic's table of the revision, as Alembic makes it
alembic_version = Table(
    "alembic_version",
    MetaData(),
    Column("version_num", String(32), nullable=False),
    PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
)


def _config(conn: Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    if conn is not None:
        config.attributes["connection"] = conn
    return config


def head() -> str:
    """The newest migration's revision, as Alembic finds it in ``migrations/``."""
    from alembic.script import ScriptDirectory

    found = ScriptDirectory.from_config(_config()).get_current_head()
    assert found is not None
    return found


def current(conn: Connection) -> str | None:
    """The revision the database is at (None: never migrated)."""
    if not inspect(conn).has_table(alembic_version.name):
        return None
    return conn.execute(select(alembic_version.c.version_num)).scalar()


# SQLite: how often a migration refused "database is locked" is tried again, and the pause
LOCKED_ATTEMPTS = 10
LOCKED_PAUSE = 0.2


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Bring the database to the newest revision; returns (revision before, revision after).
    ``engine`` begins write transactions (SQLite: ``BEGIN IMMEDIATE``).

    On SQLite a refusal with "database is locked" is tried again (up to
    :data:`LOCKED_ATTEMPTS` times): several processes or threads creating one new database
    file can meet one that is still setting the file up (its switch to WAL), where SQLite
    answers at once instead of waiting the busy timeout."""
    for attempt in range(1, LOCKED_ATTEMPTS + 1):
        try:
            return _upgrade(engine)
        except OperationalError as error:
            locked = engine.dialect.name == "sqlite" and "database is locked" in str(error)
            if not locked or attempt == LOCKED_ATTEMPTS:
                raise
            time.sleep(LOCKED_PAUSE * attempt)
    raise AssertionError("unreachable")


def _upgrade(engine: Engine) -> tuple[str | None, str]:
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(select(func.pg_advisory_xact_lock(MIGRATION_LOCK_KEY)))
        before = current(conn)
        if before == HEAD:
            return before, HEAD
        if before is None and not inspect(conn).get_table_names():  # a new database
            metadata.create_all(conn)
            alembic_version.create(conn)
            conn.execute(insert(alembic_version).values(version_num=HEAD))
            return before, HEAD
        from alembic import command

        command.upgrade(_config(conn), "head")
        return before, HEAD
