"""The checking layer above every blob driver: the one place where digests are computed and
compared, so no driver can store bytes under a digest they do not have.

Running hashes: a sha256 that follows an upload as its parts stream through this process, kept
in memory under the token of the state it covers (a driver renews the token with every write,
and while a token is current the bytes it names never change: see ``openecr.ports.blobs``). A
commit uses it when the state it commits carries that token, and otherwise re-reads the
session's bytes from the driver: a part that went through another process or replica, a
restart, or a sha512 digest. Python's hash objects cannot be serialised, so the hash itself is
never persisted; re-reading at commit is the fallback, never a risk.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator

from openecr.domain.digest import Digest
from openecr.domain.model import UploadState
from openecr.errors import InvalidLayer
from openecr.ports.blobs import BlobDriver, StoredObject, UploadWriter

MAX_RUNNING_HASHES = 4096  # per process; past this the oldest is dropped (its commit re-reads)


class CheckedWriter:
    """A driver's writer that hashes what passes through it (when the store has the hash of
    the bytes before it)."""

    def __init__(self, store: BlobStore, inner: UploadWriter, hasher: hashlib._Hash | None) -> None:
        self._store = store
        self._inner = inner
        self._hasher = hasher

    @property
    def size(self) -> int:
        return self._inner.size

    def write(self, chunks: Iterable[bytes]) -> None:
        batch = list(chunks)
        if self._hasher is not None:
            for chunk in batch:
                self._hasher.update(chunk)
        self._inner.write(batch)

    def finish(self) -> UploadState:
        state = self._inner.finish()
        if self._hasher is not None:
            self._store._remember(state.token, self._hasher)
        return state

    def abort(self) -> None:
        self._hasher = None
        self._inner.abort()


class BlobStore:
    """A blob driver behind digest verification (see the module docstring)."""

    def __init__(self, driver: BlobDriver) -> None:
        self.driver = driver
        self._lock = threading.Lock()
        self._running: OrderedDict[str, hashlib._Hash] = OrderedDict()

    def _remember(self, token: str, hasher: hashlib._Hash) -> None:
        with self._lock:
            self._running[token] = hasher
            while len(self._running) > MAX_RUNNING_HASHES:
                self._running.popitem(last=False)

    def _take(self, token: str) -> hashlib._Hash | None:
        with self._lock:
            return self._running.pop(token, None)

    # --- upload sessions -----------------------------------------------------------------

    def begin(self) -> UploadState:
        return self.driver.begin()

    def writer(self, state: UploadState) -> CheckedWriter:
        """A write onto the end of the session (see ``BlobDriver.writer``)."""
        inner = self.driver.writer(state)
        hasher = self._take(state.token)
        if hasher is None and state.size == 0:
            hasher = hashlib.sha256()
        return CheckedWriter(self, inner, hasher)

    def digest_of(self, state: UploadState, algorithm: str) -> str:
        """The ``<algorithm>:<hex>`` of the session's bytes: from the running hash when it
        covers exactly this state, else by reading them back."""
        hasher = self._take(state.token) if algorithm == "sha256" else None
        if hasher is None:
            hasher = hashlib.new(algorithm)
            for chunk in self.driver.read_upload(state):
                hasher.update(chunk)
        return f"{algorithm}:{hasher.hexdigest()}"

    def commit(self, state: UploadState, expected: Digest) -> None:
        """Store the session's bytes as ``expected`` and end the session, once they hash to
        it; on a mismatch raise InvalidLayer and store nothing (the session stays open)."""
        actual = self.digest_of(state, expected.algorithm)
        if actual != expected:
            raise InvalidLayer(f"The content hashes to {actual}, not {expected}")
        self.driver.commit(state, expected)

    def abort(self, state: UploadState) -> None:
        self._take(state.token)
        self.driver.abort(state)

    # --- committed blobs -------------------------------------------------------------------

    def put(self, data: bytes) -> Digest:
        """Store small ``data`` and return its sha256 digest."""
        digest = Digest.of(data)
        self.driver.put(digest, data)
        return digest

    def stat(self, digest: Digest) -> int | None:
        return self.driver.stat(digest)

    def open(self, digest: Digest, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        return self.driver.open(digest, offset, length)

    def touch(self, digest: Digest) -> bool:
        return self.driver.touch(digest)

    def modified(self, digest: Digest) -> float | None:
        return self.driver.modified(digest)

    def list(self) -> Iterator[StoredObject]:
        return self.driver.list()

    def delete(self, digest: Digest, older_than: float | None = None) -> bool:
        return self.driver.delete(digest, older_than)

    def list_uploads(self) -> Iterator[StoredObject]:
        return self.driver.list_uploads()

    def discard_upload(self, key: str) -> None:
        self.driver.discard_upload(key)

    def download_url(self, digest: Digest, expires_in: int) -> str | None:
        return self.driver.download_url(digest, expires_in)

    def local_path(self, digest: Digest) -> str | None:
        return self.driver.local_path(digest)
