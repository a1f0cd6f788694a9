"""Serving a stored manifest in the form a client accepts (ECR's by-tag format conversion).

:class:`ManifestConverter` is the :data:`~openecr.service.images.Converter` the image service
calls when a pull does not accept the stored type. It negotiates with
:func:`~openecr.domain.conversion.choose_media_type` and runs the transform (by tag; by digest
it only signs an unsigned schema 1 manifest, which keeps its digest):

==========================  =====================================================================
stored \\ served             how
==========================  =====================================================================
Docker v2 schema 2          OCI (config and layer types renamed, digests kept); schema 1 signed
                            (``v1+prettyjws``) or unsigned (``v1+json``), built from the config
                            blob's history, which is read through the blob store
OCI image manifest          Docker v2 schema 2 (not for artifacts or zstd layers)
schema 1 unsigned / signed  the other schema 1 form (the signed payload is the unsigned bytes)
list / index                never converted
==========================  =====================================================================

Schema 1 manifests are signed with the registry's P-256 key (kept in the data directory, see
``bootstrap.load_schema1_key``). A schema 1 manifest whose history has empty layers names the
gzipped empty tar, which the converter stores and links to the repository on first use, as
docker/distribution does, so every blob a served manifest names can be fetched.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from openecr.domain import conversion as conv
from openecr.domain import mediatypes as mt
from openecr.domain.digest import Digest
from openecr.domain.model import BlobInfo, ImageRecord
from openecr.errors import OpenEcrError
from openecr.ports.metadata import MetadataStore
from openecr.service.blobstore import BlobStore
from openecr.service.common import Clock, utcnow

if TYPE_CHECKING:
    from openecr.service.schema1_signing import Schema1Signer

log = logging.getLogger(__name__)

# Image configs are small; a "config" larger than this is not one schema 1 can carry.
MAX_CONFIG_BYTES = 8 * 1024 * 1024


class ManifestConverter:
    """Converts stored image manifests between Docker v2 schema 2, OCI and schema 1."""

    def __init__(
        self,
        meta: MetadataStore,
        blobs: BlobStore,
        signer: Callable[[], Schema1Signer],
        clock: Clock = utcnow,
    ) -> None:
        """``signer`` gives the schema 1 signing key when a conversion first needs it (loading
        it, and cryptography with it, only then)."""
        self.meta = meta
        self.blobs = blobs
        self.signer = signer
        self.clock = clock

    def __call__(
        self, image: ImageRecord, accepted: Sequence[str], repository: str, tag: str | None
    ) -> tuple[bytes, str] | None:
        """The image as a pull of ``repository:tag`` (``tag`` None: by digest) accepting
        ``accepted`` gets it: ``(manifest bytes, media type)``, or None when no accepted form
        can be made."""
        by_tag = tag is not None
        return self.negotiate(image, accepted, by_tag=by_tag, repository=repository, tag=tag)

    def negotiate(
        self,
        image: ImageRecord,
        accepted: Sequence[str] | None,
        *,
        by_tag: bool,
        repository: str,
        tag: str | None,
    ) -> tuple[bytes, str] | None:
        """The whole rule (:func:`~openecr.domain.conversion.choose_media_type`) for any caller:
        ``accepted`` None serves the stored manifest; by tag, the stored form if accepted, else
        the best accepted conversion, else None (the caller reports the image as not found); by
        digest, the stored form (signed, for an unsigned schema 1 the client takes only signed)."""
        target = conv.choose_media_type(image.media_type, accepted, by_tag=by_tag)
        if target is None:
            return None
        if target == image.media_type:
            return image.manifest, image.media_type
        converted = self._convert(image, target, repository, tag)
        if converted is None:
            log.debug("no %s form of %s (%s)", target, image.digest, image.media_type)
            return None
        return converted, target

    def _convert(
        self, image: ImageRecord, target: str, repository: str, tag: str | None
    ) -> bytes | None:
        stored = image.media_type
        if stored == mt.DOCKER_MANIFEST_V2 and target == mt.OCI_MANIFEST:
            return conv.docker_to_oci(image.manifest)
        if stored == mt.OCI_MANIFEST and target == mt.DOCKER_MANIFEST_V2:
            return conv.oci_to_docker(image.manifest)
        if stored == mt.DOCKER_MANIFEST_V2 and target in mt.SCHEMA1:
            unsigned = self._schema1(image, repository, tag)
            if unsigned is None or target == mt.DOCKER_MANIFEST_V1:
                return unsigned
            return self.signer().sign(unsigned, self.clock())
        if stored == mt.DOCKER_MANIFEST_V1 and target == mt.DOCKER_MANIFEST_V1_SIGNED:
            return self.signer().sign(image.manifest, self.clock())
        if stored == mt.DOCKER_MANIFEST_V1_SIGNED and target == mt.DOCKER_MANIFEST_V1:
            return conv.schema1_payload(image.manifest)
        return None

    def _schema1(self, image: ImageRecord, repository: str, tag: str | None) -> bytes | None:
        config_digest = conv.schema1_config_digest(image.manifest)
        parsed = Digest.try_parse(config_digest) if config_digest else None
        if parsed is None or tag is None:
            return None
        config = self._read(parsed)
        if config is None:
            return None
        built = conv.docker_to_schema1(image.manifest, config, repository, tag)
        if built is None:
            return None
        if built.uses_empty_tar:
            self._ensure_empty_tar(image.repository_id, image.digest)
        return built.manifest

    def _read(self, digest: Digest) -> bytes | None:
        size = self.blobs.stat(digest)
        if size is None or size > MAX_CONFIG_BYTES:
            return None
        try:
            return b"".join(self.blobs.open(digest))
        except OpenEcrError:  # removed since the size check
            return None

    def _ensure_empty_tar(self, repository_id: int, image: str) -> None:
        """Make the gzipped empty tar a blob of the repository, kept alive by ``image`` (whose
        schema 1 form lists it) for garbage collection (idempotent)."""
        digest = conv.EMPTY_TAR_DIGEST
        with self.meta.read() as tx:
            linked = tx.get_linked_blob(repository_id, digest) is not None
            if linked and tx.blob_in_use(digest) and self.blobs.stat(Digest.parse(digest)):
                return
        for _attempt in range(3):
            self.blobs.put(conv.GZIPPED_EMPTY_TAR)  # refreshes it when it is there
            with self.meta.write() as tx:
                if not self.blobs.touch(Digest.parse(digest)):
                    continue  # collected between the put and this transaction
                if tx.get_image(repository_id, image) is not None:
                    tx.add_image_blobs(repository_id, image, [digest])
                tx.link_blob(repository_id, BlobInfo(digest, len(conv.GZIPPED_EMPTY_TAR)))
                return
