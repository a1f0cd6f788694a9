"""Layer uploads and downloads, shared by the ECR layer API and (later) the OCI blob routes.

Order of effects: the blob store commits the bytes first, then one metadata transaction links
the blob to the repository, so a crash leaves at worst an unreferenced blob, never a reference
to a missing one.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from openecr.domain import digest as digests
from openecr.domain.digest import Digest
from openecr.domain.model import BlobInfo, UploadSession
from openecr.errors import (
    BlobNotFound,
    EmptyUpload,
    InvalidLayer,
    InvalidLayerPart,
    InvalidParameter,
    LayerAlreadyExists,
    LayerPartSizeMismatch,
    LayersNotFound,
    UploadNotFound,
)
from openecr.ports.blobs import BlobStore
from openecr.ports.metadata import MetadataStore
from openecr.service.repositories import Clock, require_repository, utcnow

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


class PartUpload:
    """One part being streamed onto an upload: :meth:`write` batches as they arrive (each a
    short blocking call, so no thread waits on a slow client), then :meth:`finish`, or
    :meth:`abort` on any failure. The upload never keeps a part that did not finish."""

    def __init__(self, service: LayerService, session: UploadSession, base: int) -> None:
        self.service = service
        self.session = session
        self.base = base  # the upload's size before this part
        self.size = base

    @property
    def upload_id(self) -> str:
        return self.session.id

    def write(self, chunks: Iterable[bytes]) -> None:
        """Append a batch; raises UploadNotFound."""
        self.size = self.service.blobs.append(self.upload_id, self.size, iter(chunks))

    def finish(self, length: int | None = None) -> int:
        """End the part and return the upload's size. ``length`` is how long the client said
        the part is: a body of another length is dropped and raises LayerPartSizeMismatch."""
        received = self.size - self.base
        if length is not None and received != length:
            self.abort()
            raise LayerPartSizeMismatch(
                f"The part holds {received} bytes but the request declared {length}"
            )
        if received:
            with self.service.meta.write() as tx:
                tx.update_upload(self.upload_id, self.size, self.session.parts + 1)
        return self.size

    def abort(self) -> None:
        """Drop what this part appended (idempotent)."""
        with contextlib.suppress(UploadNotFound):
            self.service.blobs.truncate(self.upload_id, self.base)
        self.size = self.base


class LayerService:
    def __init__(self, meta: MetadataStore, blobs: BlobStore, clock: Clock = utcnow) -> None:
        self.meta = meta
        self.blobs = blobs
        self.clock = clock

    def initiate(self, registry_id: str, name: str) -> UploadSession:
        """Open an upload session in a repository; raises RepositoryNotFound."""
        with self.meta.write() as tx:
            repo = require_repository(tx, registry_id, name)
            session = UploadSession(str(uuid.uuid4()), repo.id, self.clock())
            self.blobs.begin_upload(session.id)
            tx.create_upload(session)
        return session

    def _session(self, registry_id: str, name: str, upload_id: str) -> UploadSession:
        with self.meta.read() as tx:
            repo = require_repository(tx, registry_id, name)
            session = tx.get_upload(upload_id)
        if session is None or session.repository_id != repo.id:
            raise UploadNotFound(UPLOAD_NOT_FOUND)
        return session

    def upload_part(
        self, registry_id: str, name: str, upload_id: str, first: int, last: int, data: bytes
    ) -> int:
        """Append a part that starts where the upload ends and spans ``first..last``
        (inclusive); return the last byte received. Raises InvalidLayerPart, UploadNotFound."""
        session = self._session(registry_id, name, upload_id)
        current = self.blobs.upload_size(upload_id)
        if first != current or last - first + 1 != len(data) or not data:
            raise self._bad_part(current)
        size = self.blobs.append(upload_id, current, iter((data,)))
        with self.meta.write() as tx:
            tx.update_upload(upload_id, size, session.parts + 1)
        return size - 1

    @staticmethod
    def _bad_part(current: int) -> InvalidLayerPart:
        return InvalidLayerPart(
            "The layer part size is not valid, or the first byte specified is not consecutive "
            f"to the last byte of a previous layer part upload. Last valid byte received: "
            f"{current - 1}"
        )

    def complete(
        self, registry_id: str, name: str, upload_id: str, layer_digests: Sequence[str]
    ) -> str:
        """Verify and commit the upload as the given digest, link it to the repository and end
        the session. Raises UploadNotFound, EmptyUpload, InvalidLayer, LayerAlreadyExists."""
        session = self._session(registry_id, name, upload_id)
        if len(layer_digests) != 1:
            raise InvalidParameter.constraint(
                "layerDigests", "Member must have length less than or equal to 1"
            )
        claimed = layer_digests[0]
        expected = Digest.try_parse(claimed)
        if expected is None:
            raise InvalidLayer(f"The layer digest '{claimed}' is not a valid digest")
        if self.blobs.upload_size(upload_id) == 0:
            raise EmptyUpload("The specified layer upload does not contain any layer parts.")
        with self.meta.read() as tx:
            already = tx.get_linked_blob(session.repository_id, claimed)
        if already is not None:
            self.blobs.cancel(upload_id)
            with self.meta.write() as tx:
                tx.delete_upload(upload_id)
            raise LayerAlreadyExists(
                f"The layer '{claimed}' already exists in the repository with name '{name}' "
                f"in the registry with id '{registry_id}'"
            )
        try:
            size = self.blobs.commit(upload_id, expected)
        except InvalidLayer:
            raise InvalidLayer(
                f"The layer digest calculated for the uploaded layer does not match the "
                f"provided digest '{claimed}'"
            ) from None
        with self.meta.write() as tx:
            tx.link_blob(session.repository_id, BlobInfo(claimed, size))
            tx.delete_upload(upload_id)
        return claimed

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

    def find(self, registry_id: str, name: str, layer_digest: str) -> BlobInfo:
        """A layer held by the repository; raises InvalidParameter or LayersNotFound."""
        if Digest.try_parse(layer_digest) is None:
            raise InvalidParameter.constraint(
                "layerDigest", f"must satisfy regular expression '{digests.ECR_DIGEST_PATTERN}'"
            )
        with self.meta.read() as tx:
            repo = require_repository(tx, registry_id, name)
            blob = tx.get_linked_blob(repo.id, layer_digest)
        if blob is None:
            raise LayersNotFound(
                f"The layer with digest '{layer_digest}' does not exist in the repository with "
                f"name '{name}' in the registry with id '{registry_id}'"
            )
        return blob

    # --- streaming uploads and blob access (the OCI Distribution blob endpoints) ---------------

    def open_part(
        self, registry_id: str, name: str, upload_id: str, *, start: int | None = None
    ) -> PartUpload:
        """Begin a part that the caller streams onto the end of an upload (see
        :class:`PartUpload`). ``start`` is where the client says the part begins
        (``Content-Range``): anything but the current size raises InvalidLayerPart. Reads
        only. Raises RepositoryNotFound, UploadNotFound."""
        session = self._session(registry_id, name, upload_id)
        current = self.blobs.upload_size(upload_id)
        if start is not None and start != current:
            raise self._bad_part(current)
        return PartUpload(self, session, current)

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
        """Stream ``chunks`` onto the end of an upload in one call and return its new size:
        :meth:`open_part`, then :meth:`PartUpload.write` and :meth:`PartUpload.finish`; a part
        that fails in any way is dropped whole."""
        part = self.open_part(registry_id, name, upload_id, start=start)
        try:
            part.write(chunks)
            return part.finish(length)
        except BaseException:
            part.abort()
            raise

    def upload_size(self, registry_id: str, name: str, upload_id: str) -> int:
        """Bytes an open upload holds; raises RepositoryNotFound, UploadNotFound."""
        self._session(registry_id, name, upload_id)
        return self.blobs.upload_size(upload_id)

    def cancel(self, registry_id: str, name: str, upload_id: str) -> None:
        """End an upload and drop its bytes; raises RepositoryNotFound, UploadNotFound."""
        self._session(registry_id, name, upload_id)
        self._end(upload_id)

    def _end(self, upload_id: str) -> None:
        self.blobs.cancel(upload_id)
        with self.meta.write() as tx:
            tx.delete_upload(upload_id)

    def finish(self, registry_id: str, name: str, upload_id: str, digest: Digest) -> BlobInfo:
        """Verify that an upload hashes to ``digest``, commit it (a blob already stored is
        fine), link it to the repository and end the session. Empty blobs are allowed. On a
        mismatch the session ends, nothing is stored and InvalidLayer is raised. Raises
        RepositoryNotFound, UploadNotFound."""
        session = self._session(registry_id, name, upload_id)
        try:
            size = self.blobs.commit(upload_id, digest)
        except InvalidLayer:
            self._end(upload_id)
            raise InvalidLayer(
                "The digest calculated for the uploaded content does not match the provided "
                f"digest '{digest}'"
            ) from None
        blob = BlobInfo(str(digest), size)
        with self.meta.write() as tx:
            tx.link_blob(session.repository_id, blob)
            tx.delete_upload(upload_id)
        return blob

    def mount(self, registry_id: str, name: str, digest: Digest, source: str) -> BlobInfo | None:
        """Link a blob that repository ``source`` of the same registry holds into ``name``;
        None when the source repository or the blob is not there (the caller then falls back
        to an upload). Raises RepositoryNotFound for ``name``."""
        with self.meta.write() as tx:
            repo = require_repository(tx, registry_id, name)
            origin = tx.get_repository(registry_id, source)
            blob = tx.get_linked_blob(origin.id, str(digest)) if origin is not None else None
            if blob is None or not self.blobs.exists(digest):
                return None
            tx.link_blob(repo.id, blob)
        return blob

    def _blob_not_found(self, registry_id: str, name: str, digest: Digest) -> BlobNotFound:
        return BlobNotFound(
            f"The blob with digest '{digest}' does not exist in the repository with name "
            f"'{name}' in the registry with id '{registry_id}'"
        )

    def stat(self, registry_id: str, name: str, digest: Digest) -> BlobInfo:
        """A blob the repository holds; raises RepositoryNotFound, BlobNotFound."""
        with self.meta.read() as tx:
            repo = require_repository(tx, registry_id, name)
            blob = tx.get_linked_blob(repo.id, str(digest))
        if blob is None:
            raise self._blob_not_found(registry_id, name, digest)
        return blob

    def unlink(self, registry_id: str, name: str, digest: Digest) -> None:
        """Remove a blob from a repository; its bytes stay for the repositories that still
        hold it. Raises RepositoryNotFound, BlobNotFound."""
        with self.meta.write() as tx:
            repo = require_repository(tx, registry_id, name)
            if not tx.unlink_blob(repo.id, str(digest)):
                raise self._blob_not_found(registry_id, name, digest)
