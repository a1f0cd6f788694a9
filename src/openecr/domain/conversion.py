"""Manifest format conversion, as ECR documents it for pulls by tag: the pure transforms.

* :func:`choose_media_type` is the negotiation: which form of a stored manifest to serve for a
  list of accepted media types (BatchGetImage's ``acceptedMediaTypes``, a ``/v2`` ``Accept``).
* :func:`docker_to_oci` / :func:`oci_to_docker` rewrite an image manifest between Docker v2
  schema 2 and OCI; blobs keep their digests (a config is the same bytes under either type).
* :func:`docker_to_schema1` builds a Docker v2 schema 1 manifest from a schema 2 manifest and
  its config blob, as docker/distribution's ``configManifestBuilder`` does (synthetic v1 ids,
  ``v1Compatibility`` history from the config's ``history``).
* :func:`schema1_payload` recovers the payload of a schema 1 manifest signed as libtrust's
  "pretty JWS" (``application/vnd.docker.distribution.manifest.v1+prettyjws``), over which such
  a manifest's digest is computed. Signing needs a key and lives in
  :mod:`openecr.service.schema1_signing`.

Nothing here touches storage; every function returns ``None`` for input it cannot convert.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from openecr.domain import b64url
from openecr.domain import mediatypes as mt
from openecr.domain.digest import Digest

# --- negotiation --------------------------------------------------------------------------------

# Docker's schema-1 client registers its parser under ``application/json`` (the type registries
# served signed schema 1 manifests under before the v1+prettyjws name), so that name asks for
# signed schema 1; it does not mean "any JSON".
LEGACY_SCHEMA1 = "application/json"

# What each stored form may be served as when its own type is not accepted, best first.
# Lists and indexes are never rewritten (their children are fetched by digest, which never
# converts), nor reduced to one platform; OCI is not rewritten to schema 1 (ECR's current
# documentation: "No translation available"); schema 1 converts only between its two forms.
CONVERSIONS: Mapping[str, tuple[str, ...]] = {
    mt.DOCKER_MANIFEST_V2: (
        mt.OCI_MANIFEST,
        mt.DOCKER_MANIFEST_V1_SIGNED,
        mt.DOCKER_MANIFEST_V1,
    ),
    mt.OCI_MANIFEST: (mt.DOCKER_MANIFEST_V2,),
    mt.DOCKER_MANIFEST_V1: (mt.DOCKER_MANIFEST_V1_SIGNED,),
    mt.DOCKER_MANIFEST_V1_SIGNED: (mt.DOCKER_MANIFEST_V1,),
    mt.DOCKER_MANIFEST_LIST: (),
    mt.OCI_INDEX: (),
}


def _media_range(value: str) -> str:
    """``value`` without parameters (``; q=0.5``) and surrounding space, lower-cased."""
    return value.split(";", 1)[0].strip().lower()


def accepts(accepted: Iterable[str], media_type: str) -> bool:
    """Whether a client listing ``accepted`` takes ``media_type`` as is: by exact name, by a
    ``*/*`` or ``type/*`` range, or (signed schema 1) by its legacy name ``application/json``."""
    wanted = media_type.lower()
    kind = wanted.split("/", 1)[0]
    for item in accepted:
        found = _media_range(item)
        if found in (wanted, "*/*", f"{kind}/*"):
            return True
        if found == LEGACY_SCHEMA1 and wanted == mt.DOCKER_MANIFEST_V1_SIGNED:
            return True
    return False


def choose_media_type(stored: str, accepted: Sequence[str] | None, *, by_tag: bool) -> str | None:
    """The form in which to serve a manifest stored as ``stored``, or None when there is none.

    ``accepted`` None or empty (nothing stated) takes the stored form. By tag, the stored form
    when accepted, else the first form of :data:`CONVERSIONS` the client accepts (only exact
    names select a conversion). By digest nothing is translated (ECR: "there is no translation
    available"): the stored form is served even when not accepted, with one exception that
    keeps the digest: an unsigned schema 1 manifest is signed for a client that takes only the
    signed form (a schema 1 digest is computed over the payload, which signing leaves as is).
    docker needs it: it resolves a tag with HEAD, then fetches the manifest by digest."""
    if not accepted or accepts(accepted, stored):
        return stored
    exact = {_media_range(a) for a in accepted}
    if LEGACY_SCHEMA1 in exact:
        exact.add(mt.DOCKER_MANIFEST_V1_SIGNED)
    if not by_tag:
        signs = stored == mt.DOCKER_MANIFEST_V1 and mt.DOCKER_MANIFEST_V1_SIGNED in exact
        return mt.DOCKER_MANIFEST_V1_SIGNED if signs else stored
    for target in CONVERSIONS.get(stored, ()):
        if target in exact:
            return target
    return None


# --- serialisation ------------------------------------------------------------------------------


def _pretty(doc: Mapping[str, Any]) -> bytes:
    """JSON as docker/distribution writes manifests: three-space indent, fields in order."""
    return json.dumps(doc, indent=3, ensure_ascii=False).encode()


def _compact(doc: Any, *, sort_keys: bool = False) -> str:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False, sort_keys=sort_keys)


def _load(raw: bytes) -> dict[str, Any] | None:
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


# --- Docker v2 schema 2 <-> OCI -----------------------------------------------------------------

DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_FOREIGN_LAYER_TAR = "application/vnd.docker.image.rootfs.foreign.diff.tar"
OCI_NONDISTRIBUTABLE = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_NONDISTRIBUTABLE_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"

# Layer types with an equivalent on the other side (OCI's zstd layers have none in Docker).
DOCKER_TO_OCI_LAYER: Mapping[str, str] = {
    mt.DOCKER_LAYER: mt.OCI_LAYER_GZIP,
    DOCKER_LAYER_TAR: mt.OCI_LAYER,
    mt.DOCKER_FOREIGN_LAYER: OCI_NONDISTRIBUTABLE_GZIP,
    DOCKER_FOREIGN_LAYER_TAR: OCI_NONDISTRIBUTABLE,
}
OCI_TO_DOCKER_LAYER: Mapping[str, str] = {v: k for k, v in DOCKER_TO_OCI_LAYER.items()}


def _descriptor(value: Any, media_type: str | None, *, oci: bool) -> dict[str, Any] | None:
    """A blob descriptor with ``media_type``, its fields in the target format's order (OCI:
    mediaType, digest, size, urls, annotations; Docker: mediaType, size, digest, urls)."""
    if not isinstance(value, dict):
        return None
    digest, size = value.get("digest"), value.get("size")
    if not isinstance(digest, str) or not isinstance(size, int) or isinstance(size, bool):
        return None
    out: dict[str, Any] = {"mediaType": media_type} if media_type else {}
    if oci:
        out |= {"digest": digest, "size": size}
    else:
        out |= {"size": size, "digest": digest}
    urls = value.get("urls")
    if isinstance(urls, list) and urls:
        out["urls"] = urls
    annotations = value.get("annotations")
    if oci and isinstance(annotations, dict) and annotations:
        out["annotations"] = annotations
    return out


def docker_to_oci(raw: bytes) -> bytes | None:
    """An OCI image manifest for a Docker v2 schema 2 manifest. The Docker config type becomes
    OCI's (other config types, such as plugin configs, are kept: OCI allows any); layer types
    map to their OCI equivalents (unknown ones are kept)."""
    doc = _load(raw)
    if doc is None or doc.get("mediaType", mt.DOCKER_MANIFEST_V2) != mt.DOCKER_MANIFEST_V2:
        return None
    config = doc.get("config")
    layers = doc.get("layers")
    if not isinstance(config, dict) or not isinstance(layers, list):
        return None
    config_type = config.get("mediaType")
    if not isinstance(config_type, str):
        return None
    new_config = _descriptor(
        config, mt.OCI_CONFIG if config_type == mt.DOCKER_CONFIG else config_type, oci=True
    )
    new_layers = []
    for layer in layers:
        kind = layer.get("mediaType") if isinstance(layer, dict) else None
        if not isinstance(kind, str):
            return None
        new_layers.append(_descriptor(layer, DOCKER_TO_OCI_LAYER.get(kind, kind), oci=True))
    if new_config is None or None in new_layers:
        return None
    out: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": new_config,
        "layers": new_layers,
    }
    annotations = doc.get("annotations")
    if isinstance(annotations, dict) and annotations:
        out["annotations"] = annotations
    return _pretty(out)


def oci_to_docker(raw: bytes) -> bytes | None:
    """A Docker v2 schema 2 manifest for an OCI image manifest, or None for what Docker cannot
    express: artifacts (a config that is not an OCI image config, or an ``artifactType``) and
    layer types without a Docker equivalent (zstd). ``subject`` and annotations, which Docker
    manifests have no field for, are left out."""
    doc = _load(raw)
    if doc is None or doc.get("mediaType", mt.OCI_MANIFEST) != mt.OCI_MANIFEST:
        return None
    if doc.get("schemaVersion") != 2 or "manifests" in doc or doc.get("artifactType"):
        return None
    config = doc.get("config")
    layers = doc.get("layers")
    if not isinstance(config, dict) or config.get("mediaType") != mt.OCI_CONFIG:
        return None
    if not isinstance(layers, list):
        return None
    new_layers = []
    for layer in layers:
        kind = layer.get("mediaType") if isinstance(layer, dict) else None
        target = OCI_TO_DOCKER_LAYER.get(kind) if isinstance(kind, str) else None
        if target is None:
            return None
        new_layers.append(_descriptor(layer, target, oci=False))
    new_config = _descriptor(config, mt.DOCKER_CONFIG, oci=False)
    if new_config is None or None in new_layers:
        return None
    return _pretty(
        {
            "schemaVersion": 2,
            "mediaType": mt.DOCKER_MANIFEST_V2,
            "config": new_config,
            "layers": new_layers,
        }
    )


# --- Docker v2 schema 2 -> schema 1 -------------------------------------------------------------

# A gzip-compressed empty tar (1024 NUL bytes), the blob schema 1 uses for history entries that
# made no layer (``empty_layer``); byte-identical to docker/distribution's, hence its digest.
GZIPPED_EMPTY_TAR = bytes.fromhex(
    "1f8b080000096e8800ff621805a360148c5800080000ffff2eafb5ef00040000"
)
EMPTY_TAR_DIGEST = "sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4"

ZERO_TIME = "0001-01-01T00:00:00Z"  # Go's zero time, what docker writes for a missing date


@dataclass(frozen=True, slots=True)
class Schema1Build:
    """An unsigned schema 1 manifest and whether it names :data:`GZIPPED_EMPTY_TAR`."""

    manifest: bytes
    uses_empty_tar: bool


def schema1_config_digest(raw: bytes) -> str | None:
    """The config blob a schema 2 manifest needs read to build its schema 1 form (None when it
    cannot have one: not an image config, or foreign layers, which schema 1 cannot point at)."""
    doc = _load(raw)
    if doc is None or doc.get("mediaType", mt.DOCKER_MANIFEST_V2) != mt.DOCKER_MANIFEST_V2:
        return None
    config = doc.get("config")
    layers = doc.get("layers")
    if not isinstance(config, dict) or config.get("mediaType") not in (
        mt.DOCKER_CONFIG,
        mt.OCI_CONFIG,
    ):
        return None
    if not isinstance(layers, list) or not layers:
        return None
    for layer in layers:
        if not isinstance(layer, dict) or not isinstance(layer.get("digest"), str):
            return None
        if layer.get("urls") or layer.get("mediaType") in (
            mt.DOCKER_FOREIGN_LAYER,
            DOCKER_FOREIGN_LAYER_TAR,
        ):
            return None
    digest = config.get("digest")
    return digest if isinstance(digest, str) else None


def _history(config: Mapping[str, Any], layers: int) -> list[dict[str, Any]] | None:
    history = config.get("history")
    if history is None or history == []:
        # No history (configs written by hand or by minimal builders): one entry per layer,
        # dated like the image. docker/distribution refuses these; a pull should not fail.
        created = config.get("created") if isinstance(config.get("created"), str) else None
        return [{"created": created or ZERO_TIME} for _ in range(layers)]
    if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
        return None
    if sum(1 for h in history if not h.get("empty_layer")) != layers:
        return None
    return history


def docker_to_schema1(raw: bytes, config_blob: bytes, name: str, tag: str) -> Schema1Build | None:
    """The unsigned schema 1 form of the schema 2 manifest ``raw`` with config ``config_blob``,
    for ``name:tag``. One ``fsLayers``/``history`` entry per config history entry, newest
    first; history entries without a layer point at the empty tar and are ``throwaway``."""
    if schema1_config_digest(raw) is None:
        return None
    doc = _load(raw)
    config = _load(config_blob)
    if doc is None or config is None:
        return None
    layers = [layer["digest"] for layer in doc["layers"]]
    rootfs = config.get("rootfs")
    rootfs = rootfs if isinstance(rootfs, dict) else {}
    diff_ids = rootfs.get("diff_ids")
    if diff_ids is not None and (not isinstance(diff_ids, list) or len(diff_ids) != len(layers)):
        return None
    history = _history(config, len(layers))
    if history is None:
        return None
    base_layer = rootfs.get("base_layer")

    fs_layers: list[str] = []
    compat: list[str] = []
    parent = ""
    remaining = iter(layers)
    uses_empty = False
    for i, entry in enumerate(history):
        empty = bool(entry.get("empty_layer"))
        blobsum = EMPTY_TAR_DIGEST if empty else next(remaining)
        uses_empty = uses_empty or empty
        encoded = blobsum.split(":", 1)[1]
        if i == len(history) - 1:
            top_id = hashlib.sha256(f"{encoded} {parent} ".encode() + config_blob).hexdigest()
            top = {k: v for k, v in config.items() if k not in ("rootfs", "history")}
            top["id"] = top_id
            if parent:
                top["parent"] = parent
            if empty:
                top["throwaway"] = True
            compat.append(_compact(top, sort_keys=True))
        else:
            v1_id = hashlib.sha256(f"{encoded} {parent}".encode()).hexdigest()
            if i == 0 and isinstance(base_layer, str) and base_layer:
                parent = hashlib.sha384(base_layer.encode()).hexdigest()[:64]  # windows
            entry_doc: dict[str, Any] = {"id": v1_id}
            if parent:
                entry_doc["parent"] = parent
            if isinstance(entry.get("comment"), str) and entry["comment"]:
                entry_doc["comment"] = entry["comment"]
            created = entry.get("created")
            entry_doc["created"] = created if isinstance(created, str) and created else ZERO_TIME
            created_by = entry.get("created_by")
            entry_doc["container_config"] = {
                "Cmd": [created_by if isinstance(created_by, str) else ""]
            }
            if isinstance(entry.get("author"), str) and entry["author"]:
                entry_doc["author"] = entry["author"]
            if empty:
                entry_doc["throwaway"] = True
            compat.append(_compact(entry_doc))
            parent = v1_id
        fs_layers.append(blobsum)
    architecture = config.get("architecture")
    manifest = {
        "schemaVersion": 1,
        "name": name,
        "tag": tag,
        "architecture": architecture if isinstance(architecture, str) else "",
        "fsLayers": [{"blobSum": b} for b in reversed(fs_layers)],
        "history": [{"v1Compatibility": c} for c in reversed(compat)],
    }
    return Schema1Build(_pretty(manifest), uses_empty)


# --- schema 1 signatures (libtrust "pretty JWS"; signing is service.schema1_signing) -----------


def schema1_payload(signed: bytes) -> bytes | None:
    """The payload a pretty-JWS schema 1 manifest signs (the manifest without its signatures),
    rebuilt from the first signature's ``formatLength`` and ``formatTail``; None if ``signed``
    carries no readable signature."""
    doc = _load(signed)
    signatures = doc.get("signatures") if doc else None
    if not isinstance(signatures, list) or not signatures:
        return None
    first = signatures[0]
    protected = first.get("protected") if isinstance(first, dict) else None
    if not isinstance(protected, str):
        return None
    try:
        header = json.loads(b64url.decode(protected))
        length, tail = header["formatLength"], b64url.decode(header["formatTail"])
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(length, int) or isinstance(length, bool) or not 0 < length <= len(signed):
        return None
    return signed[:length] + tail


def served_digest(raw: bytes, media_type: str) -> str:
    """The digest a registry reports for a served manifest (``Docker-Content-Digest``): sha256
    of its bytes, except signed schema 1, whose digest is over the payload without the
    signatures (docker/distribution's ``Canonical``)."""
    if media_type == mt.DOCKER_MANIFEST_V1_SIGNED:
        payload = schema1_payload(raw)
        if payload is not None:
            return str(Digest.of(payload))
    return str(Digest.of(raw))
