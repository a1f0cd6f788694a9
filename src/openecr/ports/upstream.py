"""The upstream registries of pull-through cache rules: what the core needs from an OCI
Distribution registry it reads from (a manifest, a blob, a credentials check)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class UpstreamProblem(StrEnum):
    """Why an upstream request failed, as ECR's failure codes tell them apart."""

    NOT_FOUND = "NOT_FOUND"  # 404: the upstream has no such repository, manifest or blob
    DENIED = "DENIED"  # 401/403: the credentials were refused (or none were given)
    THROTTLED = "THROTTLED"  # 429
    UNAVAILABLE = "UNAVAILABLE"  # 5xx, a timeout, no connection, a broken answer


class UpstreamFailure(Exception):
    """An upstream request that did not give what was asked; ``problem`` says why."""

    def __init__(self, problem: UpstreamProblem, message: str) -> None:
        super().__init__(message)
        self.problem = problem
        self.message = message


@dataclass(frozen=True, slots=True)
class UpstreamEndpoint:
    """Where an upstream registry is (``scheme://host[:port][/path]``) and how to log in:
    anonymous when ``username`` is None."""

    base_url: str
    username: str | None = None
    password: str | None = None


@dataclass(frozen=True, slots=True)
class UpstreamManifest:
    """A manifest as the upstream sent it: bytes, ``Content-Type``, ``Docker-Content-Digest``
    (None when absent). Nothing is verified here: the caller checks the digest."""

    body: bytes
    media_type: str | None
    digest: str | None


class UpstreamBlob(Protocol):
    """A blob being read from the upstream: its declared size (None: unknown), then its
    bytes in pieces; ``close`` ends the transfer early (idempotent)."""

    @property
    def size(self) -> int | None: ...

    def chunks(self) -> Iterator[bytes]: ...

    def close(self) -> None: ...


class UpstreamRegistry(Protocol):
    """One upstream registry. Every method raises :class:`UpstreamFailure`."""

    def check(self) -> None:
        """Reach ``/v2/`` and log in (when credentials are set)."""
        ...

    def manifest(self, repository: str, reference: str, accept: Sequence[str]) -> UpstreamManifest:
        """GET a manifest by tag or digest."""
        ...

    def manifest_digest(self, repository: str, reference: str, accept: Sequence[str]) -> str | None:
        """HEAD a manifest: its ``Docker-Content-Digest`` (None when the upstream sends none)."""
        ...

    def blob(self, repository: str, digest: str) -> UpstreamBlob:
        """Start reading a blob (the caller closes it)."""
        ...

    def close(self) -> None: ...


# The factory bootstrap wires in: one client per endpoint.
UpstreamFactory = Callable[[UpstreamEndpoint], UpstreamRegistry]
