"""Idle checkpoints: once the writes of a SQLite store pause, every frame of its write-ahead log
is copied into the database, so reads skip the log; a reader that holds frames back delays the
checkpoint to the next pause, never blocks on it."""

from __future__ import annotations

import sqlite3
import struct
import time
from datetime import UTC, datetime
from pathlib import Path

from openecr.backends.sql import SqlMetadataStore
from openecr.backends.sql.checkpoint import IDLE_SECONDS
from openecr.domain.model import ImageRecord, Repository

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _log(db: Path) -> tuple[int, int]:
    """(frames in the write-ahead log, frames copied into the database), from the WAL index
    (https://www.sqlite.org/walformat.html: mxFrame at byte 16, nBackfill at byte 96)."""
    header = (db.parent / (db.name + "-shm")).read_bytes()[:100]
    return struct.unpack_from("<I", header, 16)[0], struct.unpack_from("<I", header, 96)[0]


def _write(store: SqlMetadataStore, name: str, images: int) -> None:
    with store.write() as tx:
        repo = tx.create_repository(Repository(0, "123456789012", name, T0))
        for i in range(images):
            digest = f"sha256:{i:064x}"
            tx.insert_image(
                ImageRecord(repo.id, digest, b"{}" * 500, "application/json", None, 2, T0)
            )


def _settle(db: Path, pauses: float = 4) -> tuple[int, int]:
    """The log's state once it stops changing (at most ``pauses`` idle periods)."""
    deadline = time.monotonic() + pauses * IDLE_SECONDS + 2
    state = _log(db)
    while time.monotonic() < deadline:
        time.sleep(IDLE_SECONDS / 2)
        state = _log(db)
        if state[0] == state[1]:
            return state
    return state


def test_the_log_is_copied_once_writes_pause(tmp_path: Path) -> None:
    db = tmp_path / "meta.db"
    store = SqlMetadataStore(f"sqlite:///{db}")
    try:
        _write(store, "app", 200)
        frames, copied = _log(db)
        assert frames > copied  # just committed: in the log only
        frames, copied = _settle(db)
        assert frames > 0 and copied == frames
    finally:
        store.close()


def test_a_reader_holding_frames_delays_the_checkpoint_to_the_next_pause(tmp_path: Path) -> None:
    db = tmp_path / "meta.db"
    store = SqlMetadataStore(f"sqlite:///{db}")
    reader = sqlite3.connect(db, isolation_level=None)
    try:
        _write(store, "first", 10)
        _settle(db)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM images").fetchone()  # a snapshot before the next
        _write(store, "second", 200)
        time.sleep(IDLE_SECONDS * 3)
        frames, copied = _log(db)
        assert copied < frames  # the reader's snapshot needs the database as it was
        reader.execute("ROLLBACK")
        # no write since: the checkpointer tries again by itself
        frames, copied = _settle(db)
        assert copied == frames
    finally:
        reader.close()
        store.close()
