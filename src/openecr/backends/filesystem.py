"""A blob driver on the local filesystem.

Layout under ``root``::

    blobs/<algorithm>/<first two hex>/<hex>   committed, immutable, complete
    uploads/<key>                             bytes of an open upload session
    uploads/<key>.token                       the session's current token

A commit fsyncs the session file, renames it into place and fsyncs the directory, so a crash
leaves either the whole blob or none of it.

Tokens (the port's rule: the first ``size`` bytes of a session never change while a state's
token is current): a writer takes the session file's ``flock`` without waiting (a second
writer is refused), checks that the token file names its state's token, cuts the file back to
the state's size (dropping what a failed or crashed write left past it), appends, and on
finish writes a fresh random token (write to a temporary name, then rename). So bytes below a
current state's size are never rewritten, and a state read before another write finished
carries a stale token. The token file is not fsynced: after a machine crash a stale token
only makes the client start its upload again, it never lets wrong bytes through (the digest is
checked at commit, above this driver).

Garbage collection: a commit or put that finds its blob already stored refreshes the blob's
mtime (``os.utime``) before dropping its own copy, and installs its copy when the blob vanished
meanwhile. ``delete(digest, older_than)`` first renames the blob away (atomic), then reads the
mtime of what it took: a blob refreshed before the rename is put back (unless a new copy is
already in place), one refreshed after it finds no file and installs its own copy. So a blob
stored again while a collection deletes it is never lost.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from openecr.domain.digest import Digest
from openecr.domain.model import UploadState
from openecr.errors import BlobNotFound, InvalidLayerPart, UploadNotFound
from openecr.ports.blobs import StoredObject

CHUNK = 2 * 1024 * 1024  # read size when streaming a blob
_KEY = re.compile(r"[0-9a-f]{32}")
_TOKEN_SUFFIX = ".token"
_ALGORITHM = re.compile(r"sha(256|384|512)")


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


def _gone(key: str) -> UploadNotFound:
    return UploadNotFound(f"Upload session '{key}' is not found")


def _busy() -> InvalidLayerPart:
    return InvalidLayerPart("Another request is writing to this upload; retry when it has finished")


def _stale() -> InvalidLayerPart:
    return InvalidLayerPart("The upload was changed by another request since this one started")


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


def _stamp(target: Path | int) -> None:
    """Set the mtime of a file (path or descriptor) to now, from the precise clock: the kernel
    stamps writes from a coarse one, which may lag a collector's cutoff taken just before."""
    now = time.time_ns()
    os.utime(target, ns=(now, now))


def _refresh(path: Path) -> bool:
    """Refresh the mtime of the blob at ``path`` and return True if it is still there
    afterwards; False when there is none (the caller then installs its own copy). A collector
    that renames the blob away between the two steps either saw the new mtime (and puts the
    blob back) or took it, in which case the check after the refresh finds it gone."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        _stamp(fd)
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False
    finally:
        os.close(fd)


def _scan(path: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(path) as entries:
            return list(entries)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _stat(entry: os.DirEntry[str]) -> os.stat_result | None:
    try:
        return None if not entry.is_file(follow_symlinks=False) else entry.stat()
    except FileNotFoundError:
        return None


class _FileWriter:
    """A write onto a session file; holds the file's flock from start to finish or abort."""

    def __init__(self, driver: FilesystemBlobDriver, state: UploadState, handle: BinaryIO):
        self._driver = driver
        self._state = state
        self._handle: BinaryIO | None = handle
        self._size = state.size

    @property
    def size(self) -> int:
        return self._size

    def _open(self) -> BinaryIO:
        if self._handle is None:
            raise _gone(self._state.key)
        return self._handle

    def write(self, chunks: Iterable[bytes]) -> None:
        handle = self._open()
        for chunk in chunks:
            handle.write(chunk)
            self._size += len(chunk)

    def finish(self) -> UploadState:
        handle = self._open()
        try:
            handle.flush()
            if os.fstat(handle.fileno()).st_nlink == 0:  # aborted meanwhile
                raise _gone(self._state.key)
            token = self._driver._set_token(self._state.key)
        finally:
            self._close()
        return UploadState(self._state.key, self._size, token, self._state.extra)

    def abort(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self._handle.truncate(self._state.size)
            self._close()

    def _close(self) -> None:
        if self._handle is not None:
            self._handle.close()  # releases the flock
            self._handle = None


class FilesystemBlobDriver:
    """Blobs as files under ``root``; see the module docstring for the layout and tokens."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._blobs = self.root / "blobs"
        self._uploads = self.root / "uploads"
        self._blobs.mkdir(parents=True, exist_ok=True)
        self._uploads.mkdir(parents=True, exist_ok=True)

    def _path(self, digest: Digest) -> Path:
        return self._blobs / digest.algorithm / digest.hex[:2] / digest.hex

    def _session(self, key: str) -> Path:
        if _KEY.fullmatch(key) is None:
            raise _gone(key)
        return self._uploads / key

    def _token_path(self, key: str) -> Path:
        return self._uploads / f"{key}.token"

    def _token(self, key: str) -> str | None:
        try:
            return self._token_path(key).read_text()
        except FileNotFoundError:
            return None

    def _set_token(self, key: str) -> str:
        token = uuid.uuid4().hex
        tmp = self._uploads / f".{key}.{token}"
        tmp.write_text(token)
        os.replace(tmp, self._token_path(key))
        return token

    def _lock(self, state: UploadState) -> BinaryIO:
        """The session file, opened and exclusively locked without waiting, once ``state`` is
        checked current. Raises UploadNotFound, InvalidLayerPart."""
        path = self._session(state.key)
        try:
            handle = path.open("r+b")
        except FileNotFoundError:
            raise _gone(state.key) from None
        try:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise _busy() from None
            if os.fstat(handle.fileno()).st_nlink == 0:  # committed or aborted meanwhile
                raise _gone(state.key)
            if self._token(state.key) != state.token:
                raise _stale()
            if os.fstat(handle.fileno()).st_size < state.size:
                raise _stale()
        except BaseException:
            handle.close()
            raise
        return handle

    # --- upload sessions -----------------------------------------------------------------

    def begin(self) -> UploadState:
        key = uuid.uuid4().hex
        self._session(key).touch(exist_ok=False)
        return UploadState(key, 0, self._set_token(key))

    def writer(self, state: UploadState) -> _FileWriter:
        handle = self._lock(state)
        handle.truncate(state.size)  # what a failed write left past the state
        handle.seek(state.size)
        return _FileWriter(self, state, handle)

    def read_upload(self, state: UploadState) -> Iterator[bytes]:
        try:
            handle = self._session(state.key).open("rb")
        except FileNotFoundError:
            raise _gone(state.key) from None
        return _stream(handle, 0, state.size)

    def commit(self, state: UploadState, digest: Digest) -> None:
        path = self._session(state.key)
        with self._lock(state) as handle:
            handle.truncate(state.size)
            final = self._path(digest)
            if _refresh(final):
                path.unlink(missing_ok=True)
            else:
                _stamp(handle.fileno())  # the grace period counts from the commit
                os.fsync(handle.fileno())
                _make_dirs(final.parent)
                os.replace(path, final)
                _fsync_dir(final.parent)
            self._token_path(state.key).unlink(missing_ok=True)

    def abort(self, state: UploadState) -> None:
        with contextlib.suppress(UploadNotFound):
            self._session(state.key).unlink(missing_ok=True)
            self._token_path(state.key).unlink(missing_ok=True)

    def list_uploads(self) -> Iterator[StoredObject]:
        for entry in _scan(self._uploads):
            if entry.name.endswith(_TOKEN_SUFFIX) and _KEY.fullmatch(entry.name[:-6]):
                continue  # goes with its session
            info = _stat(entry)
            if info is not None:
                yield StoredObject(entry.name, info.st_size, info.st_mtime)

    def discard_upload(self, key: str) -> None:
        if _KEY.fullmatch(key):
            self._session(key).unlink(missing_ok=True)
            self._token_path(key).unlink(missing_ok=True)
        elif key.startswith(".") and "/" not in key and key not in (".", ".."):
            (self._uploads / key).unlink(missing_ok=True)  # left by an interrupted write

    # --- committed blobs -----------------------------------------------------------------

    def put(self, digest: Digest, data: bytes) -> None:
        final = self._path(digest)
        if _refresh(final):
            return
        _make_dirs(final.parent)
        tmp = self._uploads / f".put-{digest.hex}-{threading.get_ident()}-{os.getpid()}"
        with tmp.open("wb") as handle:
            handle.write(data)
            handle.flush()
            _stamp(handle.fileno())
            os.fsync(handle.fileno())
        os.replace(tmp, final)
        _fsync_dir(final.parent)

    def stat(self, digest: Digest) -> int | None:
        try:
            return self._path(digest).stat().st_size
        except FileNotFoundError:
            return None

    def open(self, digest: Digest, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        try:
            handle = self._path(digest).open("rb")
        except FileNotFoundError:
            raise BlobNotFound(f"The blob {digest} does not exist") from None
        return _stream(handle, offset, length)

    def touch(self, digest: Digest) -> bool:
        return _refresh(self._path(digest))

    def modified(self, digest: Digest) -> float | None:
        try:
            return self._path(digest).stat().st_mtime
        except FileNotFoundError:
            return None

    def list(self) -> Iterator[StoredObject]:
        for algorithm in _scan(self._blobs):
            if not _ALGORITHM.fullmatch(algorithm.name):
                continue
            for fanout in _scan(Path(algorithm.path)):
                for entry in _scan(Path(fanout.path)):
                    digest = Digest.try_parse(f"{algorithm.name}:{entry.name}")
                    info = _stat(entry) if digest is not None else None
                    if digest is not None and info is not None:
                        yield StoredObject(str(digest), info.st_size, info.st_mtime)

    def delete(self, digest: Digest, older_than: float | None = None) -> bool:
        final = self._path(digest)
        if older_than is None:
            try:
                final.unlink()
            except FileNotFoundError:
                return False
            return True
        taken = self._uploads / f".gc-{digest.hex}-{uuid.uuid4().hex}"
        try:
            os.rename(final, taken)
        except FileNotFoundError:
            return False
        if taken.stat().st_mtime >= older_than:  # stored again before the rename: put it back
            with contextlib.suppress(FileExistsError):  # a commit after it installed a copy
                os.link(taken, final)
            taken.unlink()
            return False
        taken.unlink()
        return True

    def download_url(self, digest: Digest, expires_in: int) -> str | None:
        return None

    def local_path(self, digest: Digest) -> str | None:
        path = self._path(digest)
        return str(path) if path.is_file() else None
