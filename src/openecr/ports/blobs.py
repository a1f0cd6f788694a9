"""The blob driver port: what a storage engine for content-addressed bytes implements.

A driver stores bytes; it never decides what they are. Digests are computed and checked once,
above every driver, by :class:`openecr.service.blobstore.BlobStore`, which is what the services
use. A driver may therefore trust the digest it is handed at :meth:`BlobDriver.commit` and
:meth:`BlobDriver.put`.

Upload sessions live in the driver as bytes and in the metadata store as an
:class:`~openecr.domain.model.UploadState`, which the driver returns and the caller persists
between requests (so a session started on one process or replica continues on another). The
driver's rule for states: *while a state's token is current, the first ``size`` bytes of its
session never change*; every finished write makes a new token, so a state read before another
request's write is stale, and the driver refuses it (``InvalidLayerPart``).

Garbage collection (``openecr.service.gc``) relies on one more rule: *a blob's modification
time is refreshed whenever a commit or put finds it already stored*, and ``delete`` with
``older_than`` keeps a blob modified since. So a blob stored again while the collector decides
to take it survives (see docs/garbage-collection.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from openecr.domain.digest import Digest
from openecr.domain.model import UploadState


@dataclass(frozen=True, slots=True)
class StoredObject:
    """A committed blob or an upload session's bytes, as a listing sees it: its name (a digest,
    or a session key), size and modification time (seconds since the epoch)."""

    name: str
    size: int
    modified: float


class UploadWriter(Protocol):
    """One write onto the end of an upload session: :meth:`write` batches, then either
    :meth:`finish` or :meth:`abort`. A write that does not finish leaves the session as it
    was (its state stays current)."""

    @property
    def size(self) -> int:
        """The session's size including what this writer has written so far."""
        ...

    def write(self, chunks: Iterable[bytes]) -> None:
        """Append a batch; raises UploadNotFound when the session went away."""
        ...

    def finish(self) -> UploadState:
        """End the write and return the session's new state (a new token)."""
        ...

    def abort(self) -> None:
        """Drop what this writer wrote (idempotent)."""
        ...


class BlobDriver(Protocol):
    """Content-addressed storage. Committed blobs are immutable and complete: a reader never
    sees a partial blob, and a commit is durable when it returns (where the driver claims
    durability)."""

    # --- upload sessions -------------------------------------------------------------------

    def begin(self) -> UploadState:
        """Create an empty upload session and return its state."""
        ...

    def writer(self, state: UploadState) -> UploadWriter:
        """Start writing at the end of the session ``state`` describes. Raises
        InvalidLayerPart when ``state`` is not current (another write finished since) or
        another write is in progress, UploadNotFound when the session is gone."""
        ...

    def read_upload(self, state: UploadState) -> Iterator[bytes]:
        """The ``state.size`` bytes of a session, in chunks. Raises UploadNotFound."""
        ...

    def commit(self, state: UploadState, digest: Digest) -> None:
        """Make the session's bytes the blob ``digest`` (the caller verified them; a blob
        already stored under ``digest`` is kept, its modification time refreshed) and end the
        session. Raises
        InvalidLayerPart when ``state`` is not current, UploadNotFound when it is gone."""
        ...

    def abort(self, state: UploadState) -> None:
        """End a session and drop its bytes; a session already gone is ignored."""
        ...

    def list_uploads(self) -> Iterator[StoredObject]:
        """The bytes the driver keeps for upload sessions (and what interrupted writes left
        there), by key, each with the time it was last written."""
        ...

    def discard_upload(self, key: str) -> None:
        """Drop what :meth:`list_uploads` listed under ``key`` (a session whose metadata is
        gone); a key already gone is ignored."""
        ...

    # --- committed blobs ---------------------------------------------------------------------

    def put(self, digest: Digest, data: bytes) -> None:
        """Store small ``data`` (verified by the caller to hash to ``digest``) in one step; a
        blob already stored is kept, its modification time refreshed."""
        ...

    def stat(self, digest: Digest) -> int | None:
        """The committed blob's size, or None when absent."""
        ...

    def open(self, digest: Digest, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        """Stream the blob (or ``length`` bytes from ``offset``) in chunks. Raises BlobNotFound
        when absent, before the first chunk is asked for."""
        ...

    def touch(self, digest: Digest) -> bool:
        """Refresh the committed blob's modification time to now; False when it is absent
        (also when a ``delete`` took it while this call ran)."""
        ...

    def modified(self, digest: Digest) -> float | None:
        """The committed blob's modification time (seconds since the epoch), or None."""
        ...

    def list(self) -> Iterator[StoredObject]:
        """Every committed blob (``name`` is its digest), in no particular order. Blobs
        committed or deleted while the listing runs may or may not appear."""
        ...

    def delete(self, digest: Digest, older_than: float | None = None) -> bool:
        """Remove a committed blob and return whether it did. With ``older_than`` (seconds
        since the epoch) a blob modified at or after that time is kept, also when a commit or
        put refreshes it while this call runs. A missing blob is ignored (False)."""
        ...

    def download_url(self, digest: Digest, expires_in: int) -> str | None:
        """A URL a client can fetch the blob from directly for ``expires_in`` seconds (a
        presigned object-store URL), or None when the driver has none to offer."""
        ...

    def local_path(self, digest: Digest) -> str | None:
        """The path of the committed blob's file on this machine, which a server may send
        without reading it into Python (zero-copy); None when the driver keeps no such file
        or the blob is absent. The file is complete and immutable while it exists."""
        ...
