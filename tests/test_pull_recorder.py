"""PullRecorder: at most one write per image per window of ``interval``, exclusions checked by
the writer (and again after they are lifted), on a real SQLite metadata store."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from openecr.backends.sql import SqlMetadataStore
from openecr.domain.model import ImageRecord, Repository
from openecr.service.pulls import FLUSH_MAX, PullRecorder

REGISTRY = "123456789012"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def _store(tmp_path: Path) -> tuple[SqlMetadataStore, int, list[str]]:
    store = SqlMetadataStore(f"sqlite:///{tmp_path / 'meta.db'}")
    digests = [f"sha256:{i:064x}" for i in range(3)]
    with store.write() as tx:
        repo = tx.create_repository(Repository(0, REGISTRY, "app", T0))
        for digest in digests:
            tx.insert_image(ImageRecord(repo.id, digest, b"{}", "application/json", None, 2, T0))
    return store, repo.id, digests


def _store_with(tmp_path: Path, count: int) -> tuple[SqlMetadataStore, int, list[str]]:
    """A store whose repository also holds ``count`` more images; those images' digests."""
    store, repo_id, _ = _store(tmp_path)
    many = [f"sha256:{i:064x}" for i in range(100, 100 + count)]
    with store.write() as tx:
        for digest in many:
            tx.insert_image(ImageRecord(repo_id, digest, b"{}", "application/json", None, 2, T0))
    return store, repo_id, many


def _keyed(store: SqlMetadataStore, repo_id: int, digests: list[str]) -> dict[int, str]:
    """The images ``digests`` as a pull notes them: each one's key in the store to its digest."""
    with store.read() as tx:
        found = [tx.get_image(repo_id, digest) for digest in digests]
    return {image.seq: image.digest for image in found if image is not None}


def _pulled(store: SqlMetadataStore, repo_id: int, digest: str) -> datetime | None:
    with store.read() as tx:
        found = tx.get_image(repo_id, digest)
    assert found is not None
    return found.last_pulled_at


def test_one_write_per_image_per_window(tmp_path: Path) -> None:
    store, repo_id, (a, b, _) = _store(tmp_path)
    clock = Clock()
    recorder = PullRecorder(store, clock=clock, interval=timedelta(minutes=1))
    try:
        pulled_a = _keyed(store, repo_id, [a])
        recorder.note(repo_id, _keyed(store, repo_id, [a, b]), REGISTRY)
        clock.now = T0 + timedelta(seconds=10)
        recorder.note(repo_id, pulled_a, REGISTRY)  # already noted in this window: skipped
        assert recorder.flush() == 2
        assert _pulled(store, repo_id, a) == T0
        clock.now = T0 + timedelta(seconds=30)
        recorder.note(repo_id, _keyed(store, repo_id, [a]), REGISTRY)
        assert recorder.flush() == 0
        clock.now = T0 + timedelta(minutes=1)
        assert recorder.flush() == 0  # a new window starts
        recorder.note(repo_id, _keyed(store, repo_id, [a, a]), REGISTRY)
        assert recorder.flush() == 1
        assert _pulled(store, repo_id, a) == T0 + timedelta(minutes=1)
        assert _pulled(store, repo_id, b) == T0
    finally:
        recorder.close()
        store.close()


def test_excluded_principals_are_checked_again_once_lifted(tmp_path: Path) -> None:
    store, repo_id, (a, _, c) = _store(tmp_path)
    excluded = {"arn:aws:iam::123456789012:user/ci"}
    recorder = PullRecorder(store, clock=Clock(), excluded=lambda _r, p: p in excluded)
    try:
        ci, dev = "arn:aws:iam::123456789012:user/ci", "arn:aws:iam::123456789012:user/dev"
        pulled_a, pulled_c = _keyed(store, repo_id, [a]), _keyed(store, repo_id, [c])
        recorder.note(repo_id, pulled_a, REGISTRY, ci)
        recorder.note(repo_id, pulled_c, REGISTRY, dev)
        assert recorder.flush() == 1
        assert _pulled(store, repo_id, a) is None
        assert _pulled(store, repo_id, c) == T0
        excluded.clear()  # in the same window, the principal's next pull counts
        recorder.note(repo_id, pulled_a, REGISTRY, ci)
        recorder.close()
        assert _pulled(store, repo_id, a) == T0
    finally:
        recorder.close()
        store.close()


def test_a_burst_of_first_pulls_is_written_over_several_flushes(tmp_path: Path) -> None:
    store, repo_id, many = _store_with(tmp_path, FLUSH_MAX + 5)
    recorder = PullRecorder(store, clock=Clock())
    try:
        recorder.note(repo_id, _keyed(store, repo_id, many), REGISTRY)
        assert recorder.flush() == FLUSH_MAX
        assert recorder.flush() == 5
        assert recorder.flush() == 0
        assert all(_pulled(store, repo_id, digest) == T0 for digest in many)
    finally:
        recorder.close()
        store.close()


def _pull_steadily(
    recorder: PullRecorder,
    store: SqlMetadataStore,
    repo_id: int,
    digests: list[str],
    seconds: float,
) -> list[str]:
    """Note a new image every 20 ms for ``seconds`` (pulls that keep coming); the noted."""
    noted: list[str] = []
    deadline = time.monotonic() + seconds
    for digest in digests:
        if time.monotonic() >= deadline:
            break
        recorder.note(repo_id, _keyed(store, repo_id, [digest]), REGISTRY)
        noted.append(digest)
        time.sleep(0.02)
    return noted


def _wait_written(store: SqlMetadataStore, repo_id: int, digests: list[str]) -> float:
    """Seconds until every one of ``digests`` has a pull time (at most 10)."""
    start = time.monotonic()
    while any(_pulled(store, repo_id, d) is None for d in digests):
        assert time.monotonic() - start < 10, "pull times were not written"
        time.sleep(0.05)
    return time.monotonic() - start


def test_times_are_written_once_the_pulls_pause(tmp_path: Path) -> None:
    """While pulls keep coming the writer waits (a burst is served without writes beside it);
    a second without a new pull and it writes them all, with their pull times."""
    store, repo_id, many = _store_with(tmp_path, 300)
    recorder = PullRecorder(store, max_delay=timedelta(minutes=5))
    try:
        noted = _pull_steadily(recorder, store, repo_id, many, 3.5)
        assert all(_pulled(store, repo_id, d) is None for d in noted)  # nothing written yet
        assert _wait_written(store, repo_id, noted) < 3
    finally:
        recorder.close()
        store.close()


def test_sustained_pulls_get_their_times_written_within_max_delay(tmp_path: Path) -> None:
    store, repo_id, many = _store_with(tmp_path, 300)
    recorder = PullRecorder(store, max_delay=timedelta(seconds=1))
    try:
        first = many[:5]
        for digest in first:
            recorder.note(repo_id, _keyed(store, repo_id, [digest]), REGISTRY)
        _pull_steadily(recorder, store, repo_id, many[5:], 4)  # never a quiet second
        # the first ones were written while the pulls went on: after max_delay, at a look
        assert all(_pulled(store, repo_id, d) is not None for d in first)
    finally:
        recorder.close()
        store.close()
