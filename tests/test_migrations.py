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
from openecr.backends.sql.migrate import _config, head
from openecr.backends.sql.schema import metadata
from openecr.cli.main import main


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


def test_migrations_make_the_models_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'metadata.db'}"
    SqlMetadataStore(url).close()
    assert differences(url) == []
    assert revision(url) == head()


@pytest.mark.slow  # PostgreSQL is a process
def test_migrations_make_the_models_on_postgresql(postgres_url: str) -> None:
    SqlMetadataStore(postgres_url).close()
    assert differences(postgres_url) == []
    assert revision(postgres_url) == head()


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
