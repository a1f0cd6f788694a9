"""The SQL store opens a data dir written by an earlier version (schema by ``create_all``)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from openecr.backends.sql import SqlMetadataStore

# the tables of the previous version that changed, as it created them
OLD_TABLES = """
CREATE TABLE images (
    id INTEGER NOT NULL PRIMARY KEY, repository_id INTEGER NOT NULL,
    digest VARCHAR(140) NOT NULL, manifest BLOB NOT NULL, media_type VARCHAR(255) NOT NULL,
    artifact_media_type VARCHAR(255), size BIGINT NOT NULL, pushed_at FLOAT NOT NULL,
    subject VARCHAR(140), last_pull FLOAT,
    CONSTRAINT uq_image_digest UNIQUE (repository_id, digest)
);
CREATE TABLE uploads (
    id VARCHAR(64) NOT NULL PRIMARY KEY, repository_id INTEGER NOT NULL,
    created_at FLOAT NOT NULL, size BIGINT NOT NULL, parts INTEGER NOT NULL
);
INSERT INTO images VALUES (7, 1, 'sha256:aa', X'7B7D', 'text/json', NULL, 2, 0.5, NULL, NULL);
INSERT INTO uploads VALUES ('open', 1, 0.5, 10, 1);
"""


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {name for (name,) in rows}


def indexes(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'").fetchall()
    return {name for (name,) in rows}


def test_an_old_data_dir_loses_its_open_uploads_and_keeps_its_images(tmp_path: Path) -> None:
    path = tmp_path / "metadata.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(OLD_TABLES)
    for _ in range(2):  # idempotent
        store = SqlMetadataStore(f"sqlite:///{path}")
        try:
            with store.read() as tx:
                found = tx.get_image(1, "sha256:aa")
                assert tx.get_upload("open") is None
        finally:
            store.close()
        assert found is not None and (found.seq, found.manifest) == (7, b"{}")
        # the columns added since (archive, pull times) were added, with their defaults
        assert (found.storage_class, found.last_pulled_at) == ("STANDARD", None)
        assert "uploads" not in tables(path) and "upload_sessions" in tables(path)
        # the indexes added since (the web page's push order, referrers) were created
        assert {"ix_images_repository_seq", "ix_images_subject"} <= indexes(path)
