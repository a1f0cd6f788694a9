"""The port replication needs to reach a registry served by another openecr (a peer).

Errors: :class:`PeerUnavailable` when retrying later may succeed (the peer is down, answers a
5xx or 429, the connection broke); :class:`PeerRefused` when it will not (a 4xx)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol


class PeerError(Exception):
    """A transfer to a peer failed; the message says how."""


class PeerUnavailable(PeerError):
    """The peer cannot be reached now: retry later."""


class PeerRefused(PeerError):
    """The peer refused the request: retrying will not help."""


# (blob digest, upload location, bytes the peer holds): called after each chunk, so a transfer
# interrupted (even by the death of this process) resumes at that offset
Progress = Callable[[str, str, int], None]


class PeerRegistry(Protocol):
    """One destination registry (account, region) on a peer."""

    def ensure_repository(self, name: str) -> None:
        """Create repository ``name`` unless it exists, as the peer's REPLICATION creation
        template (if any) says."""
        ...

    def has_blob(self, name: str, digest: str) -> bool: ...

    def upload_blob(
        self,
        name: str,
        digest: str,
        size: int,
        read: Callable[[int], Iterator[bytes]],
        resume: str | None,
        progress: Progress,
    ) -> None:
        """Send the blob (``read(offset)`` yields its bytes from ``offset``), continuing the
        upload at ``resume`` (a location ``progress`` reported earlier) when the peer still
        has it. The blob exists at the peer only once every byte arrived and was verified."""
        ...

    def put_manifest(self, name: str, reference: str, raw: bytes, media_type: str) -> None:
        """Store a manifest by digest or tag (its blobs and children must be there)."""
        ...


class PeerConnector(Protocol):
    def __call__(self, account: str, region: str) -> PeerRegistry | None:
        """The peer serving (account, region), or None when this openecr serves it."""
        ...
