"""BlobStore on the local filesystem.

Layout under ``root``::

    blobs/<algorithm>/<first two hex>/<hex>   committed, immutable, complete
    uploads/<upload id>                       bytes of an open upload session
    uploads/.<upload id>.gen                  the session's generation token (see below)

A commit hashes the session file, fsyncs it, renames it into place and fsyncs the directory, so
a crash leaves either the whole blob or none of it.

Several threads and processes (``serve --workers N``) share one data dir, so every change to a
session file (each append batch, a truncate, the commit, a cancel) holds its exclusive ``flock``.
To spare a large upload a second read at commit, each process keeps a running sha256 of the
sessions it streamed, recorded with the size and generation token it covers. Invariant: *a
running hash is used only when, under the flock, the file's size and generation token both
equal the ones it was recorded with*; every append and truncate writes a fresh random token
before it changes a byte, so any change made by another thread or process since (even one that
restores the size, or that crashed half-way) makes the hash stale and the commit rehashes the
file from disk. A process that did not see an upload's earlier parts rehashes likewise. The token
is not fsynced: a machine crash loses every running hash anyway, and a process crash leaves its
writes in the page cache. Tokens are random, never counters, so a session recreated under an old
id cannot match a hash of its predecessor. The token file's name starts with a dot, which no
upload id may (``_upload_path``), so it is never taken for a session; commit and cancel remove it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from openecr.domain.digest import Digest
from openecr.errors import BlobNotFound, InvalidLayer, InvalidLayerPart, UploadNotFound

CHUNK = 1024 * 1024
# running hashes kept per process; past this the oldest is dropped (its commit just rehashes)
MAX_RUNNING_HASHES = 4096


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_dirs(path: Path) -> None:
    """Create ``path`` and missing parents durably: a new directory's entry lives in its
    parent, which is fsynced too (else a crash could lose a fanout directory with the blobs
    renamed into it)."""
    if path.is_dir():
        return
    _make_dirs(path.parent)
    with contextlib.suppress(FileExistsError):
        path.mkdir()
    _fsync_dir(path.parent)


class FilesystemBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._blobs = self.root / "blobs"
        self._uploads = self.root / "uploads"
        self._blobs.mkdir(parents=True, exist_ok=True)
        self._uploads.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # upload id -> running sha256, the size and the generation token it covers
        self._hashers: dict[str, tuple[hashlib._Hash, int, bytes]] = {}

    def _path(self, digest: Digest) -> Path:
        return self._blobs / digest.algorithm / digest.hex[:2] / digest.hex

    def _upload_path(self, upload_id: str) -> Path:
        if not upload_id or "/" in upload_id or upload_id.startswith("."):
            raise UploadNotFound(f"Upload with id '{upload_id}' is not found")
        return self._uploads / upload_id

    def exists(self, digest: Digest) -> bool:
        return self._path(digest).is_file()

    def size(self, digest: Digest) -> int | None:
        try:
            return self._path(digest).stat().st_size
        except FileNotFoundError:
            return None

    def local_path(self, digest: Digest) -> str | None:
        path = self._path(digest)
        return str(path) if path.is_file() else None

    def open(self, digest: Digest, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        try:
            handle = self._path(digest).open("rb")
        except FileNotFoundError:
            raise BlobNotFound(f"The blob {digest} does not exist") from None
        return self._stream(handle, offset, length)

    @staticmethod
    def _stream(handle: BinaryIO, offset: int, length: int | None) -> Iterator[bytes]:
        try:
            handle.seek(offset)
            remaining = length
            while remaining is None or remaining > 0:
                want = CHUNK if remaining is None else min(CHUNK, remaining)
                chunk = handle.read(want)
                if not chunk:
                    break
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk
        finally:
            handle.close()

    def begin_upload(self, upload_id: str) -> None:
        self._upload_path(upload_id).touch(exist_ok=False)

    def upload_size(self, upload_id: str) -> int:
        try:
            return self._upload_path(upload_id).stat().st_size
        except FileNotFoundError:
            raise UploadNotFound(f"Upload with id '{upload_id}' is not found") from None

    def _open_locked(self, upload_id: str) -> BinaryIO:
        """The session file, opened and exclusively locked (``flock``: across threads and
        processes), so that appends and the commit of one upload never interleave."""
        path = self._upload_path(upload_id)
        try:
            handle = path.open("r+b")
        except FileNotFoundError:
            raise UploadNotFound(f"Upload with id '{upload_id}' is not found") from None
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            # a commit or cancel that held the lock may have moved the file away meanwhile
            if os.fstat(handle.fileno()).st_ino != path.stat().st_ino:
                raise FileNotFoundError(path)
        except FileNotFoundError:
            handle.close()
            raise UploadNotFound(f"Upload with id '{upload_id}' is not found") from None
        except BaseException:
            handle.close()
            raise
        return handle

    # --- generation tokens and running hashes; callers hold the upload's flock -----------------

    def _gen_path(self, upload_id: str) -> Path:
        return self._uploads / f".{upload_id}.gen"

    def _generation(self, upload_id: str) -> bytes | None:
        try:
            return self._gen_path(upload_id).read_bytes()
        except FileNotFoundError:
            return None

    def _new_generation(self, upload_id: str) -> bytes:
        """Mark the session file as about to change: any running hash recorded before is stale."""
        token = os.urandom(16).hex().encode()
        fd = os.open(self._gen_path(upload_id), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, token)
        finally:
            os.close(fd)
        return token

    def _running_hash(self, upload_id: str, size: int) -> hashlib._Hash | None:
        """Take the running sha256 of a session file of ``size`` bytes if it is provably current
        (a fresh one for an empty file), else None."""
        with self._lock:
            state = self._hashers.pop(upload_id, None)
        if size == 0:
            return hashlib.sha256()
        if state is None:
            return None
        hasher, covered, token = state
        return hasher if covered == size and token == self._generation(upload_id) else None

    def _remember(self, upload_id: str, hasher: hashlib._Hash, size: int, token: bytes) -> None:
        with self._lock:
            self._hashers.pop(upload_id, None)
            self._hashers[upload_id] = (hasher, size, token)
            while len(self._hashers) > MAX_RUNNING_HASHES:
                del self._hashers[next(iter(self._hashers))]

    def _forget(self, upload_id: str) -> None:
        with self._lock:
            self._hashers.pop(upload_id, None)

    def _end_session(self, upload_id: str) -> None:
        """After the session file moved away or was removed: drop its token and running hash."""
        self._gen_path(upload_id).unlink(missing_ok=True)
        self._forget(upload_id)

    # --- upload sessions --------------------------------------------------------------------

    def append(self, upload_id: str, offset: int, chunks: Iterator[bytes]) -> int:
        with self._open_locked(upload_id) as handle:
            current = handle.seek(0, os.SEEK_END)
            if offset != current:
                raise InvalidLayerPart(
                    f"The part starts at byte {offset} but the upload has {current} bytes"
                )
            hasher = self._running_hash(upload_id, current)
            token = self._new_generation(upload_id)
            written = current
            for chunk in chunks:
                handle.write(chunk)
                if hasher is not None:
                    hasher.update(chunk)
                written += len(chunk)
            handle.flush()
            if hasher is not None:  # only a batch written whole keeps its hash
                self._remember(upload_id, hasher, written, token)
        return written

    def truncate(self, upload_id: str, size: int) -> None:
        with self._open_locked(upload_id) as handle:
            if handle.seek(0, os.SEEK_END) == size:
                return  # nothing to drop: a running hash stays current
            self._forget(upload_id)
            self._new_generation(upload_id)
            handle.truncate(size)

    def _digest_of(self, upload_id: str, handle: BinaryIO, size: int, algorithm: str) -> str:
        if algorithm == "sha256":
            with self._lock:
                state = self._hashers.get(upload_id)
            if state is not None and state[1] == size and state[2] == self._generation(upload_id):
                return state[0].hexdigest()
        hasher = hashlib.new(algorithm)
        handle.seek(0)
        while chunk := handle.read(CHUNK):
            hasher.update(chunk)
        return hasher.hexdigest()

    def commit(self, upload_id: str, expected: Digest) -> int:
        path = self._upload_path(upload_id)
        with self._open_locked(upload_id) as handle:
            size = os.fstat(handle.fileno()).st_size
            actual = self._digest_of(upload_id, handle, size, expected.algorithm)
            if actual != expected.hex:
                raise InvalidLayer(
                    f"The layer digest {expected} does not match the uploaded content "
                    f"({expected.algorithm}:{actual})"
                )
            final = self._path(expected)
            if final.is_file():
                path.unlink(missing_ok=True)
            else:
                os.fsync(handle.fileno())
                _make_dirs(final.parent)
                os.replace(path, final)
                _fsync_dir(final.parent)
            self._end_session(upload_id)
        return size

    def cancel(self, upload_id: str) -> None:
        self._forget(upload_id)
        try:
            handle = self._open_locked(upload_id)
        except UploadNotFound:
            return
        with handle:
            self._upload_path(upload_id).unlink(missing_ok=True)
            self._end_session(upload_id)

    def put(self, data: bytes) -> Digest:
        digest = Digest.of(data)
        final = self._path(digest)
        if final.is_file():
            return digest
        _make_dirs(final.parent)
        tmp = self._uploads / f"put-{digest.hex}-{threading.get_ident()}-{os.getpid()}"
        with tmp.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, final)
        _fsync_dir(final.parent)
        return digest

    def delete(self, digest: Digest) -> None:
        self._path(digest).unlink(missing_ok=True)
