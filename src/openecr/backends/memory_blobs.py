"""A blob driver in process memory: for tests and throwaway registries (nothing survives the
process). It keeps the port's token rule exactly as the filesystem driver does."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from openecr.domain.digest import Digest
from openecr.domain.model import UploadState
from openecr.errors import BlobNotFound, InvalidLayerPart, UploadNotFound
from openecr.ports.blobs import StoredObject

CHUNK = 1024 * 1024


@dataclass
class _Session:
    data: bytearray = field(default_factory=bytearray)
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    writing: bool = False
    modified: float = field(default_factory=time.time)


def _gone(key: str) -> UploadNotFound:
    return UploadNotFound(f"Upload session '{key}' is not found")


class _MemoryWriter:
    def __init__(self, driver: MemoryBlobDriver, state: UploadState, session: _Session) -> None:
        self._driver = driver
        self._state = state
        self._session = session
        self._parts: list[bytes] = []
        self._size = state.size
        self._done = False

    @property
    def size(self) -> int:
        return self._size

    def write(self, chunks: Iterable[bytes]) -> None:
        if self._done:
            raise _gone(self._state.key)
        for chunk in chunks:
            self._parts.append(bytes(chunk))
            self._size += len(chunk)

    def finish(self) -> UploadState:
        with self._driver._lock:
            if self._done or self._driver._sessions.get(self._state.key) is not self._session:
                self._done = True
                raise _gone(self._state.key)
            del self._session.data[self._state.size :]
            for part in self._parts:
                self._session.data += part
            self._session.token = uuid.uuid4().hex
            self._session.modified = time.time()
            self._session.writing = False
            self._done = True
            return UploadState(self._state.key, self._size, self._session.token, self._state.extra)

    def abort(self) -> None:
        with self._driver._lock:
            if not self._done:
                self._session.writing = False
                self._done = True


class MemoryBlobDriver:
    """Blobs and sessions in dictionaries, guarded by one lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._blobs: dict[str, bytes] = {}
        self._modified: dict[str, float] = {}  # a blob's last commit or put
        self._sessions: dict[str, _Session] = {}

    def _current(self, state: UploadState) -> _Session:
        session = self._sessions.get(state.key)
        if session is None:
            raise _gone(state.key)
        if session.token != state.token or len(session.data) < state.size:
            raise InvalidLayerPart(
                "The upload was changed by another request since this one started"
            )
        return session

    def begin(self) -> UploadState:
        key = uuid.uuid4().hex
        session = _Session()
        with self._lock:
            self._sessions[key] = session
        return UploadState(key, 0, session.token)

    def writer(self, state: UploadState) -> _MemoryWriter:
        with self._lock:
            session = self._current(state)
            if session.writing:
                raise InvalidLayerPart(
                    "Another request is writing to this upload; retry when it has finished"
                )
            session.writing = True
        return _MemoryWriter(self, state, session)

    def read_upload(self, state: UploadState) -> Iterator[bytes]:
        with self._lock:
            session = self._sessions.get(state.key)
            if session is None:
                raise _gone(state.key)
            data = bytes(session.data[: state.size])
        return iter([data[i : i + CHUNK] for i in range(0, len(data), CHUNK)])

    def commit(self, state: UploadState, digest: Digest) -> None:
        with self._lock:
            session = self._current(state)
            if session.writing:
                raise InvalidLayerPart(
                    "Another request is writing to this upload; retry when it has finished"
                )
            self._blobs.setdefault(digest, bytes(session.data[: state.size]))
            self._modified[digest] = time.time()
            del self._sessions[state.key]

    def abort(self, state: UploadState) -> None:
        with self._lock:
            self._sessions.pop(state.key, None)

    def list_uploads(self) -> Iterator[StoredObject]:
        with self._lock:
            found = [StoredObject(k, len(s.data), s.modified) for k, s in self._sessions.items()]
        return iter(found)

    def discard_upload(self, key: str) -> None:
        with self._lock:
            self._sessions.pop(key, None)

    def put(self, digest: Digest, data: bytes) -> None:
        with self._lock:
            self._blobs.setdefault(digest, bytes(data))
            self._modified[digest] = time.time()

    def stat(self, digest: Digest) -> int | None:
        data = self._blobs.get(digest)
        return None if data is None else len(data)

    def open(self, digest: Digest, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        data = self._blobs.get(digest)
        if data is None:
            raise BlobNotFound(f"The blob {digest} does not exist")
        end = len(data) if length is None else min(len(data), offset + length)
        return iter([data[i : min(i + CHUNK, end)] for i in range(offset, end, CHUNK)])

    def touch(self, digest: Digest) -> bool:
        with self._lock:
            if digest not in self._blobs:
                return False
            self._modified[digest] = time.time()
            return True

    def modified(self, digest: Digest) -> float | None:
        return self._modified.get(digest)

    def list(self) -> Iterator[StoredObject]:
        with self._lock:
            found = [StoredObject(d, len(b), self._modified[d]) for d, b in self._blobs.items()]
        return iter(found)

    def delete(self, digest: Digest, older_than: float | None = None) -> bool:
        with self._lock:
            if digest not in self._blobs:
                return False
            if older_than is not None and self._modified[digest] >= older_than:
                return False
            del self._blobs[digest]
            del self._modified[digest]
            return True

    def download_url(self, digest: Digest, expires_in: int) -> str | None:
        return None

    def local_path(self, digest: Digest) -> str | None:
        return None
