"""Layer uploads and downloads, shared by the ECR layer API and (later) the OCI blob routes.

Order of effects: the blob store commits the bytes first, then one metadata transaction links
the blob to the repository, so a crash leaves at worst an unreferenced blob, never a reference
to a missing one.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from openecr.domain import digest as digests
from openecr.domain.digest import Digest
from openecr.domain.model import BlobInfo, UploadSession
from openecr.errors import (
    EmptyUpload,
    InvalidLayer,
    InvalidLayerPart,
    InvalidParameter,
    LayerAlreadyExists,
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
