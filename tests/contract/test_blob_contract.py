"""The blob driver contract: what every ``BlobDriver`` (ports/blobs.py) must do, run against
each driver, and what the checking layer (``service.blobstore.BlobStore``) guarantees above
any of them. A new driver joins by adding one entry to ``DRIVERS``.

``shared`` drivers stand for two processes (or replicas) on one store: two driver objects over
the same storage where the storage can be shared (files), the same object where it cannot
(memory)."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from openecr.backends.filesystem import FilesystemBlobDriver
from openecr.backends.memory_blobs import MemoryBlobDriver
from openecr.backends.s3 import S3BlobDriver
from openecr.domain.digest import Digest
from openecr.domain.model import UploadState
from openecr.errors import BlobNotFound, InvalidLayer, InvalidLayerPart, UploadNotFound
from openecr.ports.blobs import BlobDriver
from openecr.service.blobstore import BlobStore

MiB = 1024 * 1024

# name -> (make one driver, make a second driver over the same storage)
Factory = Callable[[Path], tuple[BlobDriver, BlobDriver]]


def _files(root: Path) -> tuple[BlobDriver, BlobDriver]:
    return FilesystemBlobDriver(root), FilesystemBlobDriver(root)


def _memory(_root: Path) -> tuple[BlobDriver, BlobDriver]:
    driver = MemoryBlobDriver()
    return driver, driver


DRIVERS: dict[str, Factory] = {"filesystem": _files, "memory": _memory}
# drivers on a server started for the session (a process: their runs are marked slow), made
# from the fixture that names a fresh place on it
SERVER_DRIVERS: dict[str, tuple[str, Callable[[str], tuple[BlobDriver, BlobDriver]]]] = {
    "s3": ("s3_blob_store", lambda url: (s3_driver(url), s3_driver(url))),
}


def s3_driver(url: str) -> BlobDriver:
    return S3BlobDriver.from_url(url, path_style=True)


@pytest.fixture(
    params=[
        *sorted(DRIVERS),
        *(pytest.param(name, marks=pytest.mark.slow) for name in sorted(SERVER_DRIVERS)),
    ]
)
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[BlobDriver, BlobDriver]:
    if request.param in SERVER_DRIVERS:
        fixture, make = SERVER_DRIVERS[request.param]
        return make(request.getfixturevalue(fixture))
    return DRIVERS[request.param](tmp_path / "store")


@pytest.fixture
def driver(pair: tuple[BlobDriver, BlobDriver]) -> BlobDriver:
    return pair[0]


def sha(data: bytes) -> Digest:
    return Digest.of(data)


def written(driver: BlobDriver, state: UploadState, *parts: bytes) -> UploadState:
    writer = driver.writer(state)
    for part in parts:
        writer.write([part])
    return writer.finish()


def content(
    driver: BlobDriver, digest: Digest, offset: int = 0, length: int | None = None
) -> bytes:
    return b"".join(driver.open(digest, offset, length))


# --- sessions ------------------------------------------------------------------------------


def test_a_new_session_is_empty_and_each_write_renews_the_token(driver: BlobDriver) -> None:
    state = driver.begin()
    assert state.size == 0
    assert b"".join(driver.read_upload(state)) == b""
    after = written(driver, state, b"abc", b"def")
    assert after.key == state.key and after.size == 6 and after.token != state.token
    again = written(driver, after, b"g")
    assert again.size == 7 and again.token not in (state.token, after.token)
    assert b"".join(driver.read_upload(again)) == b"abcdefg"


def test_sessions_are_independent(driver: BlobDriver) -> None:
    one, two = driver.begin(), driver.begin()
    assert one.key != two.key
    one = written(driver, one, b"one")
    two = written(driver, two, b"two!")
    assert b"".join(driver.read_upload(one)) == b"one"
    assert b"".join(driver.read_upload(two)) == b"two!"


def test_writer_reports_its_size_as_it_goes(driver: BlobDriver) -> None:
    state = written(driver, driver.begin(), b"12345")
    writer = driver.writer(state)
    assert writer.size == 5
    writer.write([b"678", b"9"])
    assert writer.size == 9
    assert writer.finish().size == 9


def test_a_stale_state_is_refused_by_writer_and_commit(
    pair: tuple[BlobDriver, BlobDriver],
) -> None:
    first, second = pair
    state = written(first, first.begin(), b"base")
    newer = written(second, state, b"+more")  # another process wrote a part
    with pytest.raises(InvalidLayerPart):
        first.writer(state)
    with pytest.raises(InvalidLayerPart):
        first.commit(state, sha(b"base"))
    first.commit(newer, sha(b"base+more"))
    assert content(second, sha(b"base+more")) == b"base+more"


def test_a_second_writer_is_refused_while_one_writes(
    pair: tuple[BlobDriver, BlobDriver],
) -> None:
    first, second = pair
    state = first.begin()
    active = first.writer(state)
    active.write([b"x"])
    with pytest.raises(InvalidLayerPart):
        second.writer(state)
    assert active.finish().size == 1


def test_an_aborted_write_leaves_the_session_as_it_was(
    pair: tuple[BlobDriver, BlobDriver],
) -> None:
    first, second = pair
    state = written(first, first.begin(), b"keep")
    writer = first.writer(state)
    writer.write([b"drop" * 1000])
    writer.abort()
    writer.abort()  # idempotent
    assert b"".join(second.read_upload(state)) == b"keep"
    after = written(second, state, b"!")  # the old state is still current
    second.commit(after, sha(b"keep!"))
    assert content(first, sha(b"keep!")) == b"keep!"


def test_files_a_crashed_write_is_not_part_of_the_session(tmp_path: Path) -> None:
    """The filesystem driver: a process that died mid-write (killed: its writer neither
    finished nor aborted, its flock went with it) left bytes past the state's size; they are
    neither read nor committed, and the next write replaces them."""
    first, second = FilesystemBlobDriver(tmp_path), FilesystemBlobDriver(tmp_path)
    state = written(first, first.begin(), b"head")
    with (tmp_path / "uploads" / state.key).open("ab") as session:
        session.write(b"garbage left by a killed process")
    assert b"".join(second.read_upload(state)) == b"head"
    after = written(second, state, b"tail")
    second.commit(after, sha(b"headtail"))
    assert content(first, sha(b"headtail")) == b"headtail"


def test_read_upload_returns_exactly_the_state_s_bytes(driver: BlobDriver) -> None:
    data = bytes(range(256)) * 9000  # > 2 MiB: several chunks
    state = written(driver, driver.begin(), data[: MiB + 3], data[MiB + 3 :])
    assert b"".join(driver.read_upload(state)) == data


def test_commit_makes_a_blob_and_ends_the_session(driver: BlobDriver) -> None:
    state = written(driver, driver.begin(), b"layer")
    driver.commit(state, sha(b"layer"))
    assert driver.stat(sha(b"layer")) == 5
    assert content(driver, sha(b"layer")) == b"layer"
    with pytest.raises(UploadNotFound):
        driver.writer(state)
    with pytest.raises(UploadNotFound):
        driver.commit(state, sha(b"layer"))


def test_commit_of_a_digest_already_stored_keeps_the_blob(driver: BlobDriver) -> None:
    one = written(driver, driver.begin(), b"same")
    two = written(driver, driver.begin(), b"same")
    driver.commit(one, sha(b"same"))
    driver.commit(two, sha(b"same"))
    assert content(driver, sha(b"same")) == b"same"


def test_an_empty_session_commits_an_empty_blob(driver: BlobDriver) -> None:
    state = driver.begin()
    driver.commit(state, sha(b""))
    assert driver.stat(sha(b"")) == 0
    assert content(driver, sha(b"")) == b""


def test_abort_ends_a_session_and_is_idempotent(driver: BlobDriver) -> None:
    state = written(driver, driver.begin(), b"bytes")
    driver.abort(state)
    driver.abort(state)
    with pytest.raises(UploadNotFound):
        driver.writer(state)
    with pytest.raises(UploadNotFound):
        b"".join(driver.read_upload(state))
    with pytest.raises(UploadNotFound):
        driver.commit(state, sha(b"bytes"))
    assert driver.stat(sha(b"bytes")) is None


def test_a_writer_whose_session_was_aborted_cannot_finish(driver: BlobDriver) -> None:
    state = driver.begin()
    writer = driver.writer(state)
    writer.write([b"late"])
    driver.abort(state)
    with pytest.raises(UploadNotFound):
        writer.finish()


def test_unknown_sessions_are_not_found(driver: BlobDriver) -> None:
    for key in ("0" * 32, "../../etc", "", ".hidden"):
        state = UploadState(key, 0, "token")
        with pytest.raises(UploadNotFound):
            driver.writer(state)
        driver.abort(state)  # ignored


# --- committed blobs -------------------------------------------------------------------------


def test_put_stat_open_delete(driver: BlobDriver) -> None:
    data = b"config bytes"
    digest = sha(data)
    assert driver.stat(digest) is None
    driver.put(digest, data)
    driver.put(digest, data)  # idempotent
    assert driver.stat(digest) == len(data)
    assert content(driver, digest) == data
    assert driver.delete(digest) is True
    assert driver.delete(digest) is False  # a missing blob is ignored
    assert driver.stat(digest) is None


@pytest.mark.parametrize(
    ("offset", "length"), [(0, None), (0, 1), (5, None), (5, 3), (11, 1), (3, 100), (12, None)]
)
def test_open_serves_ranges(driver: BlobDriver, offset: int, length: int | None) -> None:
    data = b"0123456789AB"
    driver.put(sha(data), data)
    end = len(data) if length is None else offset + length
    assert content(driver, sha(data), offset, length) == data[offset:end]


def test_open_of_a_large_blob_streams_in_pieces(driver: BlobDriver) -> None:
    data = b"z" * (5 * MiB + 7)
    driver.put(sha(data), data)
    pieces = list(driver.open(sha(data)))
    assert len(pieces) > 1 and max(len(p) for p in pieces) <= 4 * MiB
    assert b"".join(pieces) == data


def test_open_of_a_missing_blob_raises_before_streaming(driver: BlobDriver) -> None:
    with pytest.raises(BlobNotFound):
        driver.open(sha(b"absent"))


def test_blobs_of_one_algorithm_do_not_shadow_another(driver: BlobDriver) -> None:
    data = b"two algorithms"
    long = Digest.of(data, "sha512")
    driver.put(long, data)
    assert driver.stat(sha(data)) is None
    assert content(driver, long) == data


def test_download_url_is_a_url_or_none(driver: BlobDriver) -> None:
    driver.put(sha(b"u"), b"u")
    url = driver.download_url(sha(b"u"), 60)
    assert url is None or url.startswith(("http://", "https://"))


def test_concurrent_sessions_and_puts(driver: BlobDriver) -> None:
    """16 threads each stream a session and commit it while others put the same blobs."""
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            data = f"blob {i % 4}".encode() * 1000
            state = driver.begin()
            for _ in range(3):
                state = written(driver, state, data[:1000])
            driver.commit(state, sha(data[:1000] * 3))
            driver.put(sha(data), data)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for i in range(4):
        data = f"blob {i}".encode() * 1000
        assert content(driver, sha(data)) == data
        assert content(driver, sha(data[:1000] * 3)) == data[:1000] * 3


# --- what garbage collection uses ------------------------------------------------------------


def _later_than(instant: float) -> None:
    """Wait until the clock the drivers stamp blobs with has moved past ``instant``."""
    while time.time() <= instant:
        time.sleep(0.001)


def test_list_names_every_blob_with_its_size_and_time(driver: BlobDriver) -> None:
    assert list(driver.list()) == []
    small, large = b"small", b"large" * 1000
    driver.put(sha(small), small)
    committed = written(driver, driver.begin(), large)
    driver.commit(committed, sha(large))
    sha512 = Digest.of(small, "sha512")
    driver.put(sha512, small)
    found = {blob.name: blob for blob in driver.list()}
    assert set(found) == {str(sha(small)), str(sha(large)), str(sha512)}
    assert found[sha(large)].size == len(large)
    assert found[sha(small)].modified == driver.modified(sha(small))
    assert driver.modified(sha(b"absent")) is None


def test_delete_keeps_a_blob_modified_since_older_than(driver: BlobDriver) -> None:
    data = b"blob"
    driver.put(sha(data), data)
    stamped = driver.modified(sha(data))
    assert stamped is not None
    assert driver.delete(sha(data), older_than=stamped) is False  # modified at that time
    assert driver.stat(sha(data)) == len(data)
    assert driver.delete(sha(data), older_than=stamped + 1) is True
    assert driver.stat(sha(data)) is None
    assert driver.delete(sha(data), older_than=stamped + 1) is False


@pytest.mark.parametrize("how", ["commit", "put"])
def test_storing_a_blob_again_refreshes_its_time(driver: BlobDriver, how: str) -> None:
    data = b"stored twice"
    driver.put(sha(data), data)
    first = driver.modified(sha(data))
    assert first is not None
    _later_than(first)
    if how == "commit":
        driver.commit(written(driver, driver.begin(), data), sha(data))
    else:
        driver.put(sha(data), data)
    again = driver.modified(sha(data))
    assert again is not None and again > first
    assert driver.delete(sha(data), older_than=first + 1e-6) is False  # refreshed: kept
    assert content(driver, sha(data)) == data


def test_a_commit_refreshes_a_blob_whose_session_was_written_long_ago(
    driver: BlobDriver,
) -> None:
    data = b"written, committed later"
    state = written(driver, driver.begin(), data)
    (listed,) = [u for u in driver.list_uploads() if u.name == state.key]
    _later_than(listed.modified)
    driver.commit(state, sha(data))
    stamped = driver.modified(sha(data))
    assert stamped is not None and stamped > listed.modified


def test_list_uploads_and_discard_upload(pair: tuple[BlobDriver, BlobDriver]) -> None:
    driver, other = pair
    one = written(driver, driver.begin(), b"abc")
    two = driver.begin()
    found = {u.name: u for u in other.list_uploads()}
    assert set(found) == {one.key, two.key}
    assert found[one.key].size == 3 and found[two.key].size == 0
    other.discard_upload(one.key)
    other.discard_upload(one.key)  # gone already: ignored
    other.discard_upload("no-such-session")
    assert [u.name for u in driver.list_uploads()] == [two.key]
    with pytest.raises(UploadNotFound):
        driver.writer(one)
    driver.commit(two, sha(b""))
    assert list(driver.list_uploads()) == []


def test_files_a_blob_deleted_while_stored_again_survives(tmp_path: Path) -> None:
    """The filesystem driver: a commit that finds its blob renamed away by a collection
    installs its own copy; a collection that took a blob refreshed just before puts it back."""
    driver = FilesystemBlobDriver(tmp_path)
    data = b"contended"
    driver.put(sha(data), data)
    path = tmp_path / "blobs" / "sha256" / sha(data).hex[:2] / sha(data).hex
    os.utime(path, (1, 1))  # long ago
    driver.put(sha(data), data)  # stored again: refreshed
    assert driver.delete(sha(data), older_than=2) is False
    assert path.read_bytes() == data
    os.utime(path, (1, 1))
    assert driver.delete(sha(data), older_than=2) is True
    driver.commit(written(driver, driver.begin(), data), sha(data))  # after: a new copy
    assert path.read_bytes() == data
    assert [u.name for u in driver.list_uploads()] == []


def test_files_leftovers_of_interrupted_writes_are_listed_and_discarded(tmp_path: Path) -> None:
    driver = FilesystemBlobDriver(tmp_path)
    leftover = tmp_path / "uploads" / ".put-abc-1-2"
    leftover.write_bytes(b"partial")
    assert [(u.name, u.size) for u in driver.list_uploads()] == [(".put-abc-1-2", 7)]
    driver.discard_upload(".put-abc-1-2")
    driver.discard_upload("../blobs")  # never outside uploads/
    assert list(driver.list_uploads()) == []
    assert (tmp_path / "blobs").is_dir()


def test_files_leave_nothing_behind(tmp_path: Path) -> None:
    """The filesystem driver: a committed or aborted session leaves no file in uploads/."""
    driver = FilesystemBlobDriver(tmp_path)
    one = written(driver, driver.begin(), b"a")
    two = written(driver, driver.begin(), b"b")
    driver.commit(one, sha(b"a"))
    driver.abort(two)
    assert list((tmp_path / "uploads").iterdir()) == []


# --- the checking layer ----------------------------------------------------------------------


class CountingDriver:
    """A real driver that counts how often the checking layer reads a session back."""

    def __init__(self, inner: BlobDriver) -> None:
        self.inner = inner
        self.reads = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def read_upload(self, state: UploadState) -> Iterator[bytes]:
        self.reads += 1
        return self.inner.read_upload(state)


def streamed(store: BlobStore, state: UploadState, *parts: bytes) -> UploadState:
    writer = store.writer(state)
    for part in parts:
        writer.write([part])
    return writer.finish()


def test_a_mismatch_stores_nothing_and_keeps_the_session(driver: BlobDriver) -> None:
    store = BlobStore(driver)
    state = streamed(store, store.begin(), b"actual")
    with pytest.raises(InvalidLayer):
        store.commit(state, sha(b"claimed"))
    assert driver.stat(sha(b"claimed")) is None and driver.stat(sha(b"actual")) is None
    store.commit(state, sha(b"actual"))  # the session is still there for another try
    assert content(driver, sha(b"actual")) == b"actual"


def test_parts_streamed_here_commit_without_reading_back(driver: BlobDriver) -> None:
    counting = CountingDriver(driver)
    store = BlobStore(counting)  # type: ignore[arg-type]
    state = store.begin()
    for part in (b"a" * MiB, b"b" * MiB, b"c"):
        state = streamed(store, state, part)
    store.commit(state, sha(b"a" * MiB + b"b" * MiB + b"c"))
    assert counting.reads == 0


@pytest.mark.parametrize("committer", ["first", "second"])
def test_parts_through_two_processes_are_verified(
    pair: tuple[BlobDriver, BlobDriver], committer: str
) -> None:
    """Parts alternate between two processes (two stores): the commit reads the bytes back
    where its running hash does not cover them, and a wrong digest is still refused."""
    first, second = BlobStore(pair[0]), BlobStore(pair[1])
    state = streamed(first, first.begin(), b"one ")
    state = streamed(second, state, b"two ")
    state = streamed(first, state, b"three")
    store = first if committer == "first" else second
    with pytest.raises(InvalidLayer):
        store.commit(state, sha(b"one two four"))
    store.commit(state, sha(b"one two three"))
    assert content(pair[0], sha(b"one two three")) == b"one two three"


def test_sha512_commits_are_verified(driver: BlobDriver) -> None:
    store = BlobStore(driver)
    state = streamed(store, store.begin(), b"long digest")
    with pytest.raises(InvalidLayer):
        store.commit(state, Digest.of(b"other", "sha512"))
    store.commit(state, Digest.of(b"long digest", "sha512"))
    assert content(driver, Digest.of(b"long digest", "sha512")) == b"long digest"


def test_an_aborted_part_does_not_poison_the_running_hash(driver: BlobDriver) -> None:
    store = BlobStore(driver)
    state = streamed(store, store.begin(), b"good ")
    writer = store.writer(state)
    writer.write([b"bad bytes"])
    writer.abort()
    state = streamed(store, state, b"end")
    store.commit(state, sha(b"good end"))
    assert content(driver, sha(b"good end")) == b"good end"


def test_put_returns_the_sha256_digest(driver: BlobDriver) -> None:
    store = BlobStore(driver)
    digest = store.put(b"small")
    assert digest == "sha256:" + hashlib.sha256(b"small").hexdigest()
    assert content(driver, digest) == b"small"
