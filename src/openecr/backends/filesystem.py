"""BlobStore on the local filesystem.

Layout under ``root``::

    blobs/<algorithm>/<first two hex>/<hex>   committed, immutable, complete
    uploads/<upload id>                       bytes of an open upload session

A commit hashes the session file (incrementally while it streamed in, when the parts arrived
in order in this process), fsyncs it, renames it into place and fsyncs the directory, so a crash
leaves either the whole blob or none of it.
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
        # upload id -> running sha256 and the size it covers (in-process fast path only)
        self._hashers: dict[str, tuple[hashlib._Hash, int]] = {}

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
        path = self._upload_path(upload_id)
        path.touch(exist_ok=False)
        with self._lock:
            self._hashers[upload_id] = (hashlib.sha256(), 0)

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

    def append(self, upload_id: str, offset: int, chunks: Iterator[bytes]) -> int:
        with self._open_locked(upload_id) as handle:
            current = handle.seek(0, os.SEEK_END)
            if offset != current:
                raise InvalidLayerPart(
                    f"The part starts at byte {offset} but the upload has {current} bytes"
                )
            with self._lock:
                state = self._hashers.pop(upload_id, None)
            hasher = state[0] if state and state[1] == current else None
            written = current
            for chunk in chunks:
                handle.write(chunk)
                if hasher is not None:
                    hasher.update(chunk)
                written += len(chunk)
            handle.flush()
        if hasher is not None:
            with self._lock:
                self._hashers[upload_id] = (hasher, written)
        return written

    def truncate(self, upload_id: str, size: int) -> None:
        path = self._upload_path(upload_id)
        with self._lock:
            self._hashers.pop(upload_id, None)  # the running hash covers the dropped bytes
        try:
            with path.open("r+b") as handle:
                handle.truncate(size)
        except FileNotFoundError:
            raise UploadNotFound(f"Upload with id '{upload_id}' is not found") from None

    def _digest_of(self, upload_id: str, path: Path, algorithm: str) -> tuple[str, int]:
        with self._lock:
            state = self._hashers.get(upload_id)
        size = path.stat().st_size
        if algorithm == "sha256" and state is not None and state[1] == size:
            return state[0].hexdigest(), size
        hasher = hashlib.new(algorithm)
        with path.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                hasher.update(chunk)
        return hasher.hexdigest(), size

    def commit(self, upload_id: str, expected: Digest) -> int:
        path = self._upload_path(upload_id)
        with self._open_locked(upload_id) as handle:
            actual, size = self._digest_of(upload_id, path, expected.algorithm)
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
        with self._lock:
            self._hashers.pop(upload_id, None)
        return size

    def cancel(self, upload_id: str) -> None:
        with self._lock:
            self._hashers.pop(upload_id, None)
        with contextlib.suppress(FileNotFoundError, UploadNotFound):
            self._upload_path(upload_id).unlink()

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
