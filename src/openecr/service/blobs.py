"""Blobs of both APIs: uploads (ECR's layer API and /v2's blob uploads), checks, mounts and
reads. One method per use case; where ECR and /v2 differ, a parameter says which rules apply.

Order of effects: the blob store commits the bytes first, then one metadata transaction links
the blob to the repository, so a crash leaves at worst an unreferenced blob, never a reference
to a missing one. An upload's state lives in the metadata store between requests (so any
process or replica continues it) and is replaced by compare-and-set after each part: of two
parts racing on one session at most one is kept.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from openecr.domain import digest as digests
from openecr.domain.digest import Digest
from openecr.domain.model import BlobInfo, Repository, UploadSession
from openecr.domain.registries import account_of
from openecr.errors import (
    BlobNotFound,
    EmptyUpload,
    InvalidLayer,
    InvalidLayerPart,
    InvalidParameter,
    LayerAlreadyExists,
    LayerPartSizeMismatch,
    LayersNotFound,
    RepositoryNotFound,
    UploadNotFound,
)
from openecr.ports.metadata import MetadataStore, Transaction
from openecr.service.account_settings import blob_mounting_enabled
from openecr.service.blobstore import BlobStore, CheckedWriter
from openecr.service.common import Clock, Permit, require_repository, utcnow

PART_SIZE = 20 * 1024 * 1024  # what InitiateLayerUpload advertises; parts may be smaller

UPLOAD_NOT_FOUND = (
    "The upload could not be found, or the specified upload ID is not valid for this repository."
)


@dataclass(frozen=True, slots=True)
class LayerCheck:
    digest: str
    available: bool
    size: int | None = None
    media_type: str | None = None


@dataclass(frozen=True, slots=True)
class LayerFailure:
    digest: str
    code: str
    reason: str


@dataclass(frozen=True, slots=True)
class BlobContent:
    """What a read serves: the blob, the span ``[start, end)`` and its bytes (not yet read)."""

    blob: BlobInfo
    start: int
    end: int
    chunks: Iterator[bytes]


def _bad_part(current: int) -> InvalidLayerPart:
    return InvalidLayerPart(
        "The layer part size is not valid, or the first byte specified is not consecutive "
        f"to the last byte of a previous layer part upload. Last valid byte received: "
        f"{current - 1}"
    )


class PartUpload:
    """One part being streamed onto an upload: :meth:`write` batches as they arrive (each a
    short blocking call, so no thread waits on a slow client), then :meth:`finish`, or
    :meth:`abort` on any failure. The upload never keeps a part that did not finish."""

    def __init__(self, service: BlobService, session: UploadSession, writer: CheckedWriter):
        self.service = service
        self.session = session
        self.writer = writer
        self.base = session.state.size  # the upload's size before this part

    @property
    def upload_id(self) -> str:
        return self.session.id

    def write(self, chunks: Iterable[bytes]) -> None:
        """Append a batch; raises UploadNotFound."""
        self.writer.write(chunks)

    def finish(self, length: int | None = None) -> int:
        """End the part and return the upload's size. ``length`` is how long the client said
        the part is: a body of another length is dropped and raises LayerPartSizeMismatch. A
        part another request overtook is dropped and raises InvalidLayerPart."""
        received = self.writer.size - self.base
        if length is not None and received != length:
            self.abort()
            raise LayerPartSizeMismatch(
                f"The part holds {received} bytes but the request declared {length}"
            )
        if not received:
            self.abort()
            return self.base
        state = self.writer.finish()
        with self.service.meta.write() as tx:
            kept = tx.update_upload(
                self.upload_id, self.session.state.token, state, self.service.clock()
            )
        if not kept:
            raise InvalidLayerPart(
                "The upload was changed by another request while this part was written"
            )
        return state.size

    def abort(self) -> None:
        """Drop what this part wrote (idempotent)."""
        self.writer.abort()


class StreamingBlob(Protocol):
    """A blob a source streams while it stores it: ``chunks`` raises when the transfer fails
    (nothing is then stored) and must be closed."""

    @property
    def blob(self) -> BlobInfo: ...

    @property
    def chunks(self) -> ClosableChunks: ...


class ClosableChunks(Iterator[bytes], Protocol):
    def close(self) -> None: ...


class BlobSource(Protocol):
    """Where a pull may find blobs a repository does not hold yet (a pull-through cache):
    ``covers`` says cheaply whether it may have work for a repository; ``ensure_blob`` links
    the blob into the repository when it can (raising UnableToGetUpstreamLayer when its
    upstream fails) and returns quietly when it has none; ``stream_blob`` does the same
    while it streams the bytes to the caller, or returns None having linked them (or found
    none). ``permit`` is the caller's right to import (raises AccessDenied)."""

    def covers(self, registry_id: str, name: str | None = None) -> bool: ...

    def ensure_blob(
        self, registry_id: str, name: str, digest: Digest, permit: Permit | None = None
    ) -> None: ...

    def stream_blob(
        self, registry_id: str, name: str, digest: Digest, permit: Permit | None = None
    ) -> StreamingBlob | None: ...

    def check_push(self, tx: Transaction, repo: Repository) -> None:
        """Raise (PushToPullThroughCache) when pushes into ``repo`` are refused."""
        ...


class BlobService:
    def __init__(self, meta: MetadataStore, blobs: BlobStore, clock: Clock = utcnow) -> None:
        self.meta = meta
        self.blobs = blobs
        self.clock = clock
        self.source: BlobSource | None = None

    def set_source(self, source: BlobSource) -> None:
        """Consult ``source`` when a pull names a blob the repository does not hold."""
        self.source = source

    def may_fetch(self, registry_id: str, name: str) -> bool:
        """Whether a blob pull from ``name`` may reach an upstream (then it must run off the
        event loop)."""
        return self.source is not None and self.source.covers(registry_id, name)

    def _linked(
        self, registry_id: str, name: str, digest: str, permit: Permit | None = None
    ) -> BlobInfo | None:
        """The blob as the repository holds it, after the source had its chance."""
        with self.meta.read() as tx:
            repo = tx.get_repository(registry_id, name)
            blob = tx.get_linked_blob(repo.id, digest) if repo is not None else None
        if blob is not None:
            return blob
        if self.source is None or not self.source.covers(registry_id, name):
            if repo is None:
                raise RepositoryNotFound(name, account_of(registry_id))
            return None
        self.source.ensure_blob(registry_id, name, Digest(digest), permit)
        with self.meta.read() as tx:
            repo = require_repository(tx, registry_id, name)
            return tx.get_linked_blob(repo.id, digest)

    # --- upload sessions -------------------------------------------------------------------

    def _check_push(self, tx: Transaction, repo: Repository) -> None:
        if self.source is not None:
            self.source.check_push(tx, repo)

    def initiate(self, registry_id: str, name: str) -> UploadSession:
        """Open an upload session in a repository; raises RepositoryNotFound, and
        PushToPullThroughCache (the source refuses pushes there)."""
        with self.meta.read() as tx:
            repo = require_repository(tx, registry_id, name)
            self._check_push(tx, repo)
        session = UploadSession(str(uuid.uuid4()), repo.id, self.clock(), self.blobs.begin())
        try:
            with self.meta.write() as tx:
                require_repository(tx, registry_id, name)
                tx.create_upload(session)
        except BaseException:
            self.blobs.abort(session.state)
            raise
        return session

    def _session(
        self, registry_id: str, name: str, upload_id: str, *, push: bool = False
    ) -> UploadSession:
        """An open upload of the repository; with ``push``, refused when the source refuses
        pushes there (an upload opened before the repository became a cache)."""
        with self.meta.read() as tx:
            repo = require_repository(tx, registry_id, name)
            if push:
                self._check_push(tx, repo)
            session = tx.get_upload(upload_id)
        if session is None or session.repository_id != repo.id:
            raise UploadNotFound(UPLOAD_NOT_FOUND)
        return session

    def upload_size(self, registry_id: str, name: str, upload_id: str) -> int:
        """Bytes an open upload holds; raises RepositoryNotFound, UploadNotFound."""
        return self._session(registry_id, name, upload_id).state.size

    def open_part(
        self, registry_id: str, name: str, upload_id: str, *, start: int | None = None
    ) -> PartUpload:
        """Begin a part that the caller streams onto the end of an upload (see
        :class:`PartUpload`). ``start`` is where the client says the part begins: anything
        but the current size raises InvalidLayerPart. Raises RepositoryNotFound,
        UploadNotFound."""
        session = self._session(registry_id, name, upload_id)
        if start is not None and start != session.state.size:
            raise _bad_part(session.state.size)
        try:
            writer = self.blobs.writer(session.state)
        except UploadNotFound:
            raise UploadNotFound(UPLOAD_NOT_FOUND) from None
        return PartUpload(self, session, writer)

    def append(
        self,
        registry_id: str,
        name: str,
        upload_id: str,
        chunks: Iterable[bytes],
        *,
        start: int | None = None,
        length: int | None = None,
    ) -> int:
        """Write ``chunks`` onto the end of an upload in one call and return its new size
        (ECR's UploadLayerPart, and /v2 bodies that are already in memory): :meth:`open_part`,
        then :meth:`PartUpload.write` and :meth:`PartUpload.finish`; a part that fails in any
        way is dropped whole."""
        part = self.open_part(registry_id, name, upload_id, start=start)
        try:
            part.write(chunks)
            return part.finish(length)
        except BaseException:
            part.abort()
            raise

    def upload_part(
        self, registry_id: str, name: str, upload_id: str, first: int, last: int, data: bytes
    ) -> int:
        """ECR's UploadLayerPart: a non-empty part that starts where the upload ends and spans
        ``first..last`` (inclusive); return the last byte received. Raises InvalidLayerPart,
        UploadNotFound."""
        if last - first + 1 != len(data) or not data:
            raise _bad_part(self.upload_size(registry_id, name, upload_id))
        return self.append(registry_id, name, upload_id, (data,), start=first) - 1

    def cancel(self, registry_id: str, name: str, upload_id: str) -> None:
        """End an upload and drop its bytes; raises RepositoryNotFound, UploadNotFound."""
        self._end(self._session(registry_id, name, upload_id))

    def _end(self, session: UploadSession) -> None:
        with self.meta.write() as tx:
            tx.delete_upload(session.id)
        self.blobs.abort(session.state)

    def complete(
        self, registry_id: str, name: str, upload_id: str, digest: Digest, *, ecr: bool = False
    ) -> BlobInfo:
        """Verify that an upload hashes to ``digest``, store it, link it to the repository and
        end the session. Raises RepositoryNotFound, UploadNotFound, InvalidLayer,
        PushToPullThroughCache.

        With ``ecr`` (CompleteLayerUpload) ECR's rules apply: an empty upload raises
        EmptyUpload, a layer the repository already holds ends the session and raises
        LayerAlreadyExists, and a mismatch keeps the session for another try. Otherwise
        (/v2) empty blobs and known blobs are fine, and a mismatch ends the session."""
        session = self._session(registry_id, name, upload_id, push=True)
        if ecr:
            if session.state.size == 0:
                raise EmptyUpload("The specified layer upload does not contain any layer parts.")
            with self.meta.read() as tx:
                already = tx.get_linked_blob(session.repository_id, digest)
            if already is not None:
                self._end(session)
                raise LayerAlreadyExists(
                    f"The layer '{digest}' already exists in the repository with name '{name}' "
                    f"in the registry with id '{account_of(registry_id)}'"
                )
        try:
            self.blobs.commit(session.state, digest)
        except InvalidLayer:
            if ecr:
                raise InvalidLayer(
                    "The layer digest calculated for the uploaded layer does not match the "
                    f"provided digest '{digest}'"
                ) from None
            self._end(session)
            raise InvalidLayer(
                "The digest calculated for the uploaded content does not match the provided "
                f"digest '{digest}'"
            ) from None
        except UploadNotFound:
            raise UploadNotFound(UPLOAD_NOT_FOUND) from None
        blob = BlobInfo(digest, session.state.size)
        with self.meta.write() as tx:
            # refreshed inside the link's transaction: a collection that forgot the blob
            # before this one then keeps its bytes, or took them already (docs/garbage-
            # collection.md)
            kept = self.blobs.touch(digest)
            if kept:
                tx.link_blob(session.repository_id, blob)
            tx.delete_upload(upload_id)
        if not kept:
            raise UploadNotFound(
                "The uploaded content was garbage-collected before the upload completed; "
                "upload it again"
            )
        return blob

    # --- blobs of a repository -------------------------------------------------------------

    def check(
        self, registry_id: str, name: str, layer_digests: Sequence[str]
    ) -> tuple[list[LayerCheck], list[LayerFailure]]:
        """ECR's BatchCheckLayerAvailability: present layers in ``layers``; malformed, empty or
        absent digests as failures."""
        layers: list[LayerCheck] = []
        failures: list[LayerFailure] = []
        with self.meta.read() as tx:
            repo = require_repository(tx, registry_id, name)
            for value in layer_digests:
                if not value:
                    failures.append(
                        LayerFailure(value, "MissingLayerDigest", "Missing layer digest")
                    )
                elif not digests.is_well_formed(value):
                    failures.append(
                        LayerFailure(value, "InvalidLayerDigest", "Invalid layer digest")
                    )
                else:
                    blob = tx.get_linked_blob(repo.id, value)
                    if blob is None:
                        failures.append(
                            LayerFailure(value, "MissingLayerDigest", "Could not find layer")
                        )
                    else:
                        layers.append(LayerCheck(value, True, blob.size, blob.media_type))
        return layers, failures

    def find(
        self, registry_id: str, name: str, layer_digest: str, permit: Permit | None = None
    ) -> BlobInfo:
        """A layer held by the repository, as ECR's GetDownloadUrlForLayer names it (a source
        caches it whole first); raises InvalidParameter or LayersNotFound."""
        if Digest.try_parse(layer_digest) is None:
            raise InvalidParameter.constraint(
                "layerDigest", f"must satisfy regular expression '{digests.ECR_DIGEST_PATTERN}'"
            )
        if self.source is not None:
            blob = self._linked(registry_id, name, layer_digest, permit)
        else:
            with self.meta.read() as tx:
                repo = require_repository(tx, registry_id, name)
                blob = tx.get_linked_blob(repo.id, layer_digest)
        if blob is None:
            raise LayersNotFound(
                f"The layer with digest '{layer_digest}' does not exist in the repository with "
                f"name '{name}' in the registry with id '{account_of(registry_id)}'"
            )
        return blob

    def presigned_url(self, digest: Digest, expires_in: int) -> str | None:
        """A URL the blob store serves the blob from directly, if it has one."""
        return self.blobs.download_url(digest, expires_in)

    def mount(self, registry_id: str, name: str, digest: Digest, source: str) -> BlobInfo | None:
        """Link a blob that repository ``source`` of the same registry holds into ``name``;
        None when the source repository or the blob is not there (the caller then falls back
        to an upload), and when the registry's BLOB_MOUNTING setting is DISABLED. Raises
        RepositoryNotFound for ``name``."""
        with self.meta.read() as tx:
            self._check_push(tx, require_repository(tx, registry_id, name))
            if not blob_mounting_enabled(tx, registry_id):
                return None
            origin = tx.get_repository(registry_id, source)
            blob = tx.get_linked_blob(origin.id, digest) if origin is not None else None
        # the store is asked outside any write transaction (no lock held across its I/O); the
        # touch keeps a collection that decided to take the blob from taking it
        if blob is None or not self.blobs.touch(digest):
            return None
        with self.meta.write() as tx:
            repo = require_repository(tx, registry_id, name)
            tx.link_blob(repo.id, blob)
        return blob

    def _blob_not_found(self, registry_id: str, name: str, digest: Digest) -> BlobNotFound:
        return BlobNotFound(
            f"The blob with digest '{digest}' does not exist in the repository with name "
            f"'{name}' in the registry with id '{account_of(registry_id)}'"
        )

    def stat(
        self, registry_id: str, name: str, digest: Digest, permit: Permit | None = None
    ) -> BlobInfo:
        """A blob the repository holds; raises RepositoryNotFound, BlobNotFound, and what the
        source raises (see :meth:`may_fetch`)."""
        if self.source is not None:
            blob = self._linked(registry_id, name, digest, permit)
        else:
            with self.meta.read() as tx:
                repo = require_repository(tx, registry_id, name)
                blob = tx.get_linked_blob(repo.id, digest)
        if blob is None:
            raise self._blob_not_found(registry_id, name, digest)
        return blob

    def stream_first_pull(
        self, registry_id: str, name: str, digest: Digest, permit: Permit | None = None
    ) -> BlobContent | None:
        """The whole blob streamed from the source while the source caches it, when the
        repository does not hold it and a source has it (the chunks then raise when the
        transfer fails, and must be closed); None when there is nothing to stream (the
        repository holds it, now or already, or nobody has it: :meth:`stat` answers).
        Raises what the source raises (see :meth:`may_fetch`)."""
        source = self.source
        if source is None or not source.covers(registry_id, name):
            return None
        with self.meta.read() as tx:
            repo = tx.get_repository(registry_id, name)
            if repo is not None and tx.get_linked_blob(repo.id, digest) is not None:
                return None
        streamed = source.stream_blob(registry_id, name, digest, permit)
        if streamed is None:
            return None
        return BlobContent(streamed.blob, 0, streamed.blob.size, streamed.chunks)

    def read(self, blob: BlobInfo, span: tuple[int, int] | None = None) -> BlobContent:
        """The bytes of a blob found by :meth:`stat` or :meth:`find` (``span``: ``[start,
        end)``, else all). Raises BlobNotFound when the store lost them."""
        start, end = span if span is not None else (0, blob.size)
        digest = Digest(blob.digest)
        return BlobContent(blob, start, end, self.blobs.open(digest, start, end - start))

    def local_path(self, blob: BlobInfo) -> str | None:
        """The file a server may send as the whole of ``blob`` without reading it (see
        ``BlobDriver.local_path``), when the store keeps one."""
        return self.blobs.local_path(Digest(blob.digest))

    def unlink(self, registry_id: str, name: str, digest: Digest) -> None:
        """Remove a blob from a repository; its bytes stay for the repositories that still
        hold it. Raises RepositoryNotFound, BlobNotFound."""
        with self.meta.write() as tx:
            repo = require_repository(tx, registry_id, name)
            if not tx.unlink_blob(repo.id, digest):
                raise self._blob_not_found(registry_id, name, digest)
