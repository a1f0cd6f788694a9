"""Manifest parsing: keep the bytes, derive the media type and what the manifest references.

Supported: Docker v2 schema 2 manifests and manifest lists, OCI manifests and indexes (with or
without a ``mediaType`` field), and Docker v2 schema 1 (signed or not). Any problem raises
:class:`~openecr.errors.ManifestInvalid`; nothing here touches storage.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from openecr.domain import mediatypes as mt
from openecr.domain.digest import Digest
from openecr.errors import ManifestInvalid


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str | None
    digest: str
    size: int
    external: bool = False  # foreign/non-distributable layers with ``urls`` are not stored here


@dataclass(frozen=True, slots=True)
class Manifest:
    """A parsed manifest. ``raw`` is verbatim; ``digest`` is the sha256 of ``raw``."""

    raw: bytes
    media_type: str
    digest: str
    config: Descriptor | None
    layers: tuple[Descriptor, ...]
    children: tuple[Descriptor, ...]
    subject: str | None
    artifact_type: str | None

    @property
    def is_index(self) -> bool:
        return self.media_type in mt.INDEXES

    @property
    def blobs(self) -> tuple[Descriptor, ...]:
        """Blobs the registry must hold for this manifest (config first, then layers)."""
        found = ([self.config] if self.config else []) + list(self.layers)
        return tuple(d for d in found if not d.external)

    @property
    def size(self) -> int:
        """ECR's ``imageSizeInBytes``: the sum of the (compressed) layer sizes."""
        return sum(layer.size for layer in self.layers)


def _invalid(reason: str) -> ManifestInvalid:
    return ManifestInvalid(
        f"Invalid parameter at 'ImageManifest' failed to satisfy constraint: '{reason}'"
    )


def _descriptor(value: Any, where: str) -> Descriptor:
    if not isinstance(value, dict):
        raise _invalid(f"{where} must be a descriptor object")
    digest = value.get("digest")
    size = value.get("size")
    media_type = value.get("mediaType")
    if not isinstance(digest, str) or Digest.try_parse(digest) is None:
        raise _invalid(f"{where} has an invalid digest")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _invalid(f"{where} has an invalid size")
    if media_type is not None and not isinstance(media_type, str):
        raise _invalid(f"{where} has an invalid mediaType")
    urls = value.get("urls")
    foreign = media_type == mt.DOCKER_FOREIGN_LAYER or "nondistributable" in (media_type or "")
    external = foreign and isinstance(urls, list) and bool(urls)
    return Descriptor(media_type, digest, size, external)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def sniff_media_type(doc: dict[str, Any]) -> str | None:
    """The media type a manifest declares, or the one its structure implies."""
    declared = doc.get("mediaType")
    if isinstance(declared, str):
        return declared
    if doc.get("schemaVersion") == 1:
        return mt.DOCKER_MANIFEST_V1_SIGNED if "signatures" in doc else mt.DOCKER_MANIFEST_V1
    if "manifests" in doc:
        return mt.OCI_INDEX
    if "config" in doc or "layers" in doc:
        return mt.OCI_MANIFEST
    return None


MEDIA_TYPE_NOT_PROVIDED = "image manifest mediatype not provided in manifest or parameter"


def parse_manifest(
    raw: bytes, declared_type: str | None = None, *, require_media_type: bool = False
) -> Manifest:
    """Parse ``raw``. ``declared_type`` (PutImage's field or a Content-Type) must agree with the
    manifest's own ``mediaType`` when both are present. With ``require_media_type`` (PutImage),
    a schema 2 manifest with neither is refused rather than sniffed (schema 1 has no
    ``mediaType`` field and is still recognised)."""
    try:
        # strict UTF-8 (no BOM, no UTF-16/32 guessing) and strict JSON (no NaN/Infinity), so
        # whatever is stored can be served back as text; absurd nesting is invalid, not a crash
        doc = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _invalid("Invalid JSON syntax") from None
    if not isinstance(doc, dict):
        raise _invalid("Invalid JSON syntax")
    own = doc.get("mediaType")
    if own is not None and not isinstance(own, str):
        raise _invalid("mediaType must be a string")
    sniffed = sniff_media_type(doc)
    if require_media_type and not own and not declared_type and sniffed not in mt.SCHEMA1:
        raise ManifestInvalid(MEDIA_TYPE_NOT_PROVIDED)
    if declared_type and own and declared_type != own:
        raise ManifestInvalid(
            "Invalid parameter at 'imageManifestMediaType' failed to satisfy constraint: "
            f"'must match the manifest mediaType {own}'"
        )
    if declared_type and not own and declared_type in mt.SCHEMA1 and sniffed in mt.SCHEMA1:
        media_type = declared_type
    else:
        media_type = own or declared_type or sniffed or ""
    if media_type not in mt.MANIFEST_TYPES:
        raise _invalid(f"unsupported manifest media type '{media_type or 'none'}'")
    digest = str(Digest.of(raw))
    if media_type in mt.SCHEMA1:
        return _schema1(raw, doc, media_type, digest)
    if doc.get("schemaVersion") != 2:
        raise _invalid("schemaVersion must be 2")
    subject = None
    if "subject" in doc:
        subject = _descriptor(doc["subject"], "subject").digest
    artifact_type = doc.get("artifactType") if isinstance(doc.get("artifactType"), str) else None
    if media_type in mt.INDEXES:
        children = doc.get("manifests")
        if not isinstance(children, list):
            raise _invalid("manifests must be a list")
        kids = tuple(_descriptor(c, f"manifests[{i}]") for i, c in enumerate(children))
        return Manifest(raw, media_type, digest, None, (), kids, subject, artifact_type)
    config = _descriptor(doc.get("config"), "config")
    layers = doc.get("layers", [])
    if not isinstance(layers, list):
        raise _invalid("layers must be a list")
    parsed = tuple(_descriptor(x, f"layers[{i}]") for i, x in enumerate(layers))
    if artifact_type is None and config.media_type not in (None, mt.DOCKER_CONFIG, mt.OCI_CONFIG):
        artifact_type = config.media_type
    return Manifest(raw, media_type, digest, config, parsed, (), subject, artifact_type)


def _schema1(raw: bytes, doc: dict[str, Any], media_type: str, digest: str) -> Manifest:
    layers = doc.get("fsLayers")
    if not isinstance(layers, list) or not layers:
        raise _invalid("fsLayers must be a non-empty list")
    seen: dict[str, Descriptor] = {}
    for i, layer in enumerate(layers):
        blob = layer.get("blobSum") if isinstance(layer, dict) else None
        if not isinstance(blob, str) or Digest.try_parse(blob) is None:
            raise _invalid(f"fsLayers[{i}] has an invalid blobSum")
        seen.setdefault(blob, Descriptor(mt.DOCKER_LAYER, blob, 0))
    return Manifest(raw, media_type, digest, None, tuple(seen.values()), (), None, None)


def blob_references(manifest: Manifest) -> tuple[str, ...]:
    """Every digest a stored image keeps alive in the blob store: the manifest's own digest, its
    config and layers, the children of a list or index and the subject of a referrer (what
    garbage collection must never reclaim while the image exists)."""
    found = [manifest.digest]
    if manifest.config is not None:
        found.append(manifest.config.digest)
    found.extend(layer.digest for layer in manifest.layers)
    found.extend(child.digest for child in manifest.children)
    if manifest.subject is not None:
        found.append(manifest.subject)
    return tuple(dict.fromkeys(found))


def stored_references(raw: bytes, media_type: str, digest: str) -> tuple[str, ...]:
    """:func:`blob_references` of a manifest already stored (``digest`` is its image digest,
    which a sha512 push makes differ from the sha256 of ``raw``); a manifest that no longer
    parses (stored leniently by an older version) references only itself."""
    try:
        parsed = parse_manifest(raw, media_type)
    except ManifestInvalid:
        return (digest,)
    return tuple(dict.fromkeys((digest, *blob_references(parsed)[1:])))
