"""Schema migrations: the newest migration leaves exactly the tables ``schema`` declares, on
SQLite and PostgreSQL; an older database is adopted; replicas starting together migrate once;
``openecr db upgrade``."""

from __future__ import annotations

import sqlite3
import subprocess
import threading
from collections import Counter
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, text

from conftest import VENV_BIN
from openecr.backends.sql import SqlMetadataStore
from openecr.backends.sql.migrate import HEAD, _config, head
from openecr.backends.sql.schema import metadata
from openecr.cli.main import main
from storage_servers import PostgresCluster


def differences(url: str) -> list[object]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return list(compare_metadata(MigrationContext.configure(conn), metadata))
    finally:
        engine.dispose()


def revision(url: str) -> str:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return str(conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one())
    finally:
        engine.dispose()


def migrate_from_nothing(url: str) -> None:
    """Every migration, run by Alembic on an empty database."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            command.upgrade(_config(conn), "head")
    finally:
        engine.dispose()


def test_the_head_the_store_knows_is_the_newest_migration() -> None:
    assert head() == HEAD


def test_migrations_make_the_models_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'metadata.db'}"
    migrate_from_nothing(url)
    assert differences(url) == []
    assert revision(url) == head()


@pytest.mark.slow  # PostgreSQL is a process
def test_migrations_make_the_models_on_postgresql(postgres_url: str) -> None:
    migrate_from_nothing(postgres_url)
    assert differences(postgres_url) == []
    assert revision(postgres_url) == head()


def sqlite_schema(path: Path) -> dict[str, list[tuple[object, ...]]]:
    """Each table's columns (in order, with type, NOT NULL, default, key), foreign keys and
    indexes (their SQL and columns): a column added by ALTER TABLE reads as one made by
    CREATE TABLE."""
    found: dict[str, list[tuple[object, ...]]] = {}
    with sqlite3.connect(path) as conn:
        objects = conn.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
        ).fetchall()
        for kind, name, table, sql in objects:
            if kind == "table":
                found[f"table {name}"] = [
                    *conn.execute(f"PRAGMA table_info('{name}')"),
                    *conn.execute(f"PRAGMA foreign_key_list('{name}')"),
                ]
            else:
                columns = list(conn.execute(f"PRAGMA index_info('{name}')"))
                found[f"{kind} {name}"] = [(table, sql), *columns]
    return found


def test_a_new_database_gets_what_the_migrations_make_on_sqlite(tmp_path: Path) -> None:
    """An empty database is given ``schema``'s tables without Alembic: the same DDL, column
    for column, as running every migration, and stamped with the same revision."""
    migrated, created = tmp_path / "migrated.db", tmp_path / "created.db"
    migrate_from_nothing(f"sqlite:///{migrated}")
    store = SqlMetadataStore(f"sqlite:///{created}")
    try:
        assert store.revisions == (None, head())
    finally:
        store.close()
    assert sqlite_schema(created) == sqlite_schema(migrated)
    assert revision(f"sqlite:///{created}") == head()


def postgres_schema(url: str) -> dict[str, list[tuple[object, ...]]]:
    queries = {
        "columns": "SELECT table_name, ordinal_position, column_name, data_type,"
        " character_maximum_length, is_nullable, column_default FROM information_schema.columns"
        " WHERE table_schema = 'public'",
        "indexes": "SELECT tablename, indexname, indexdef FROM pg_indexes"
        " WHERE schemaname = 'public'",
        "constraints": "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)"
        " FROM pg_constraint WHERE connamespace = 'public'::regnamespace",
        "sequences": "SELECT sequence_name, data_type FROM information_schema.sequences"
        " WHERE sequence_schema = 'public'",
    }
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                name: sorted(tuple(row) for row in conn.execute(text(query)))
                for name, query in queries.items()
            }
    finally:
        engine.dispose()


@pytest.mark.slow  # PostgreSQL is a process
def test_a_new_database_gets_what_the_migrations_make_on_postgresql(
    postgres: PostgresCluster, postgres_url: str
) -> None:
    migrated = postgres.database()
    try:
        migrate_from_nothing(migrated)
        SqlMetadataStore(postgres_url).close()
        assert postgres_schema(postgres_url) == postgres_schema(migrated)
        assert revision(postgres_url) == head()
    finally:
        postgres.drop(migrated)


@pytest.mark.slow  # a process of its own, with nothing imported
def test_an_open_database_at_the_head_does_not_load_alembic(tmp_path: Path) -> None:
    """Opening a new or a current database leaves Alembic (10 MB of modules) unloaded."""
    code = (
        "import sys\n"
        "from openecr.backends.sql import SqlMetadataStore\n"
        f"url = 'sqlite:///{tmp_path / 'metadata.db'}'\n"
        "SqlMetadataStore(url).close()\n"
        "SqlMetadataStore(url).close()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('alembic', 'mako')))\n"
    )
    done = subprocess.run(
        [str(VENV_BIN / "python"), "-c", code], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"


def test_a_database_from_before_migrations_is_adopted(tmp_path: Path) -> None:
    """A data dir whose tables ``create_all`` made (no ``alembic_version``) is stamped, with the
    rows it had (tests/test_sql_schema.py: the fix-ups of older tables)."""
    path = tmp_path / "metadata.db"
    engine = create_engine(f"sqlite:///{path}")
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO repositories (registry_id, name, created_at, tag_mutability,"
                " exclusion_filters, scan_on_push, encryption_type)"
                " VALUES ('123456789012', 'old/app', 1.0, 'MUTABLE', '[]', 0, 'AES256')"
            )
        )
    engine.dispose()
    store = SqlMetadataStore(f"sqlite:///{path}")
    try:
        assert store.revisions == (None, head())
        with store.read() as tx:
            assert tx.get_repository("123456789012", "old/app") is not None
    finally:
        store.close()
    assert revision(f"sqlite:///{path}") == head()


def test_pull_times_move_to_their_own_table(tmp_path: Path) -> None:
    """Migration 0004 carries each image's ``images.last_pulled_at`` into ``image_pulls``."""
    url = f"sqlite:///{tmp_path / 'metadata.db'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        command.upgrade(_config(conn), "0003")
        conn.execute(
            text(
                "INSERT INTO images (repository_id, digest, manifest, media_type, size, pushed_at,"
                " last_pulled_at) VALUES"
                " (1, 'sha256:aa', X'7B7D', 'text/json', 2, 0.5, 1700000000),"
                " (1, 'sha256:bb', X'7B7D', 'text/json', 2, 0.5, NULL)"
            )
        )
    engine.dispose()
    store = SqlMetadataStore(url)
    try:
        assert store.revisions == ("0003", head())
        with store.read() as tx:
            pulled, never = tx.get_image(1, "sha256:aa"), tx.get_image(1, "sha256:bb")
        assert pulled is not None and pulled.last_pulled_at is not None
        assert pulled.last_pulled_at.timestamp() == 1700000000
        assert never is not None and never.last_pulled_at is None
    finally:
        store.close()


def upgrade_together(url: str, count: int) -> list[tuple[str | None, str]]:
    """``count`` stores opened on one database at the same moment; their revisions."""
    barrier = threading.Barrier(count)
    results: list[tuple[str | None, str]] = []
    errors: list[BaseException] = []

    def open_one() -> None:
        barrier.wait()
        try:
            store = SqlMetadataStore(url)
            assert store.revisions is not None
            results.append(store.revisions)
            store.close()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=open_one) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return results


def test_stores_opening_together_migrate_once_on_sqlite(tmp_path: Path) -> None:
    results = upgrade_together(f"sqlite:///{tmp_path / 'metadata.db'}", 6)
    assert Counter(results) == {(None, head()): 1, (head(), head()): 5}


@pytest.mark.slow  # PostgreSQL is a process
def test_replicas_starting_together_migrate_once_on_postgresql(postgres_url: str) -> None:
    results = upgrade_together(postgres_url, 10)
    assert Counter(results) == {(None, head()): 1, (head(), head()): 9}


def test_openecr_db_upgrade(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    assert main(["db", "upgrade", "--data-dir", str(data)]) == 0
    assert capsys.readouterr().out == f"schema upgraded from revision none to {head()}\n"
    assert main(["db", "upgrade", "--data-dir", str(data)]) == 0
    assert capsys.readouterr().out == f"schema at revision {head()}: nothing to do\n"
    with sqlite3.connect(data / "metadata.db") as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(head(),)]
    assert main(["db", "upgrade", "--database-url", "memory://"]) == 2
    assert "no schema to migrate" in capsys.readouterr().err


@pytest.mark.slow  # PostgreSQL and the openecr command are processes
def test_openecr_db_upgrade_on_postgresql(postgres_url: str) -> None:
    done = subprocess.run(
        [str(VENV_BIN / "openecr"), "db", "upgrade"],
        env={"OPENECR_DATABASE_URL": postgres_url, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, done.stdout) == (
        0,
        f"schema upgraded from revision none to {head()}\n",
    )
    assert revision(postgres_url) == head()
