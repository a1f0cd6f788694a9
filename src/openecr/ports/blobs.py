"""The blob store port: content-addressed bytes and the upload sessions that produce them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from openecr.domain.digest import Digest


class BlobStore(Protocol):
    """Content-addressed storage. Committed blobs are immutable and complete: a reader never
    sees a partial blob. Upload sessions are identified by an id the caller chooses."""

    def exists(self, digest: Digest) -> bool:
        """Whether a committed blob with this digest is present."""
        ...

    def size(self, digest: Digest) -> int | None:
        """The committed blob's size, or None if absent."""
        ...

    def open(self, digest: Digest, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        """Stream the committed blob (or a range of it) in chunks; raise BlobNotFound."""
        ...

    def local_path(self, digest: Digest) -> str | None:
        """A filesystem path to the committed blob, for zero-copy serving, if the store has one."""
        ...

    def begin_upload(self, upload_id: str) -> None:
        """Create an empty upload session."""
        ...

    def append(self, upload_id: str, offset: int, chunks: Iterator[bytes]) -> int:
        """Append ``chunks`` at ``offset``, which must equal the current size (else
        ``InvalidLayerPart``); return the new size. Raise ``UploadNotFound``."""
        ...

    def upload_size(self, upload_id: str) -> int:
        """Bytes received so far; raise ``UploadNotFound``."""
        ...

    def truncate(self, upload_id: str, size: int) -> None:
        """Cut an upload back to its first ``size`` bytes (dropping a failed part); raise
        ``UploadNotFound``."""
        ...

    def commit(self, upload_id: str, expected: Digest) -> int:
        """Verify the upload hashes to ``expected``, make it durable and visible under that digest,
        end the session and return its size. On mismatch raise ``InvalidLayer`` and store
        nothing (the session is kept, as registries let a client retry)."""
        ...

    def cancel(self, upload_id: str) -> None:
        """Drop an upload session; missing sessions are ignored."""
        ...

    def put(self, data: bytes) -> Digest:
        """Store small ``data`` in one step (sha256) and return its digest."""
        ...

    def delete(self, digest: Digest) -> None:
        """Remove a committed blob; missing blobs are ignored."""
        ...
