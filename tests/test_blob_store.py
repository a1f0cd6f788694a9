"""FilesystemBlobStore upload sessions shared by several processes on one data dir.

Each ``FilesystemBlobStore`` instance stands for one ``serve --workers`` process: its own
in-process running hashes, the same files (and ``flock``\\s: one per open file) on disk. These
drive the real store on a tmp dir; nothing is mocked.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from openecr.backends.filesystem import FilesystemBlobStore
from openecr.domain.digest import Digest
from openecr.errors import InvalidLayer, UploadNotFound

X, Y, Z = b"x" * 10, b"y" * 10, b"z" * 7


def stores(root: Path) -> tuple[FilesystemBlobStore, FilesystemBlobStore]:
    """Two "processes" on one data dir."""
    return FilesystemBlobStore(root), FilesystemBlobStore(root)


def new_upload(store: FilesystemBlobStore) -> str:
    upload_id = str(uuid.uuid4())
    store.begin_upload(upload_id)
    return upload_id


def stored_bytes(store: FilesystemBlobStore, digest: Digest) -> bytes:
    return b"".join(store.open(digest))


def uploads_dir(root: Path) -> list[str]:
    return sorted(path.name for path in (root / "uploads").iterdir())


@pytest.mark.parametrize("more", [b"", Z], ids=["commit-next", "append-then-commit"])
def test_hash_is_stale_after_another_process_rewrote_the_upload(
    tmp_path: Path, more: bytes
) -> None:
    a, b = stores(tmp_path)
    upload = new_upload(a)
    a.append(upload, 0, iter([X]))  # a hashes x*10 as it streams
    b.truncate(upload, 0)  # the part is dropped on another worker ...
    b.append(upload, 0, iter([Y]))  # ... and resent with the same length
    if more:
        a.append(upload, len(Y), iter([more]))
    with pytest.raises(InvalidLayer):
        a.commit(upload, Digest.of(X + more))
    right = Digest.of(Y + more)
    assert a.commit(upload, right) == len(Y + more)
    assert stored_bytes(a, right) == Y + more
    assert Digest.of(stored_bytes(b, right)) == right
    assert uploads_dir(tmp_path) == []


@pytest.mark.parametrize(
    ("writers", "fast"),
    [
        ("aaa", True),  # one worker saw every part: commit trusts its running hash
        ("a-aa", True),  # a no-op truncate (a part aborted before any byte) keeps it
        ("bba", False),  # the committing worker never saw the first parts: it rehashes
        ("aba", False),  # it missed a part in the middle: it rehashes
        ("aa-a", False),  # a part was dropped (on the same worker): it rehashes
    ],
)
def test_commit_uses_the_running_hash_only_when_current(
    tmp_path: Path, writers: str, fast: bool
) -> None:
    """The fast path is observed from outside: after the parts, the upload file is overwritten
    behind the store's back (same size, no lock, no new generation, like silent corruption). A
    commit that trusts its running hash accepts the digest of the bytes it streamed; one that
    rehashes the file refuses it."""
    a, b = stores(tmp_path)
    upload = new_upload(a)
    sent = b""
    for index, writer in enumerate(writers):
        if writer == "-":
            size = a.upload_size(upload)
            a.truncate(upload, size if fast else size - 3)
            sent = sent[: size if fast else size - 3]
            continue
        part = bytes([ord("a") + index]) * (index + 5)
        store = a if writer == "a" else b
        assert store.append(upload, len(sent), iter([part[:2], part[2:]])) == len(sent + part)
        sent += part
    upload_file = tmp_path / "uploads" / upload
    assert upload_file.read_bytes() == sent
    upload_file.write_bytes(b"\0" * len(sent))
    streamed = Digest.of(sent)
    if fast:
        assert a.commit(upload, streamed) == len(sent)
        assert a.exists(streamed)
    else:
        with pytest.raises(InvalidLayer):
            a.commit(upload, streamed)
        assert not a.exists(streamed)
        assert a.commit(upload, Digest.of(b"\0" * len(sent))) == len(sent)


@pytest.mark.parametrize("committer", ["a", "b"])
def test_parts_on_different_workers_commit_correctly(tmp_path: Path, committer: str) -> None:
    a, b = stores(tmp_path)
    upload = new_upload(a)
    assert a.append(upload, 0, iter([X])) == len(X)
    assert b.append(upload, len(X), iter([Y])) == len(X + Y)
    store = a if committer == "a" else b
    with pytest.raises(InvalidLayer):
        store.commit(upload, Digest.of(X))  # a's running hash covers part 1 only
    with pytest.raises(InvalidLayer):
        store.commit(upload, Digest.of(Y + X))
    right = Digest.of(X + Y)
    assert store.commit(upload, right) == len(X + Y)
    assert stored_bytes(a, right) == X + Y
    assert uploads_dir(tmp_path) == []


def test_first_part_on_another_worker_than_the_begin(tmp_path: Path) -> None:
    a, b = stores(tmp_path)
    upload = new_upload(a)
    b.append(upload, 0, iter([X]))
    with pytest.raises(InvalidLayer):
        b.commit(upload, Digest.of(Y))
    assert b.commit(upload, Digest.of(X)) == len(X)
    assert stored_bytes(a, Digest.of(X)) == X


@pytest.mark.parametrize("state", ["never-begun", "cancelled", "committed"])
def test_truncate_of_a_missing_upload(tmp_path: Path, state: str) -> None:
    a, b = stores(tmp_path)
    upload = str(uuid.uuid4())
    if state != "never-begun":
        a.begin_upload(upload)
        a.append(upload, 0, iter([X]))
        if state == "cancelled":
            b.cancel(upload)
        else:
            b.commit(upload, Digest.of(X))
    with pytest.raises(UploadNotFound):
        a.truncate(upload, 0)
    with pytest.raises(UploadNotFound):
        a.append(upload, 0, iter([Y]))
    assert uploads_dir(tmp_path) == []


@pytest.mark.parametrize("end", ["cancel", "commit", "commit-existing-blob"])
def test_ending_an_upload_leaves_nothing_behind(tmp_path: Path, end: str) -> None:
    a, b = stores(tmp_path)
    if end == "commit-existing-blob":
        a.put(X)
    upload = new_upload(a)
    a.append(upload, 0, iter([X[:4]]))
    b.truncate(upload, 2)
    b.append(upload, 2, iter([X[2:]]))
    assert f".{upload}.gen" in uploads_dir(tmp_path)
    if end == "cancel":
        b.cancel(upload)
        b.cancel(upload)  # a missing session is ignored
    else:
        assert a.commit(upload, Digest.of(X)) == len(X)
        assert stored_bytes(b, Digest.of(X)) == X
    assert uploads_dir(tmp_path) == []
    with pytest.raises(UploadNotFound):
        a.upload_size(upload)


def test_generation_file_is_never_an_upload(tmp_path: Path) -> None:
    a, _ = stores(tmp_path)
    upload = new_upload(a)
    a.append(upload, 0, iter([X]))
    sidecar = f".{upload}.gen"
    assert (tmp_path / "uploads" / sidecar).is_file()
    with pytest.raises(UploadNotFound):
        a.upload_size(sidecar)
    with pytest.raises(UploadNotFound):
        a.append(sidecar, 0, iter([Y]))
    with pytest.raises(UploadNotFound):
        a.truncate(sidecar, 0)
    with pytest.raises(UploadNotFound):
        a.commit(sidecar, Digest.of(b""))
    with pytest.raises(UploadNotFound):
        a.begin_upload(sidecar)
    a.cancel(sidecar)  # ignored, and the real session is untouched
    assert a.upload_size(upload) == len(X)
    assert a.commit(upload, Digest.of(X)) == len(X)
