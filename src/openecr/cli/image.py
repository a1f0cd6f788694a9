"""``openecr image export|import``: images in and out of the local store as tar files, without
a daemon.

``export REPO:TAG|REPO@DIGEST -o FILE`` writes one tar that is both an OCI image layout
(``oci-layout``, ``index.json``, ``blobs/sha256/...``: skopeo's ``oci-archive:``) and, for an
image manifest, a docker archive (``manifest.json`` naming the same blobs: ``docker load``,
skopeo's ``docker-archive:``), as ``docker save`` has written since docker 25. Manifests, configs
and layers are written byte for byte, so digests and the image ID stay what they were. An
index is exported whole in the layout; its ``manifest.json`` names the ``--platform`` image
(default linux/amd64). ``--format oci`` leaves ``manifest.json`` out.

``import FILE --repository-name N [--image-tag T]`` reads such a tar (also gzip-compressed): an
OCI layout (``index.json``: every image it lists, indexes with their children) or a docker
archive without one (``manifest.json``: each image becomes an OCI manifest over the same config
and layer files, so its image ID is kept). Each image is tagged ``T``, else with the tag its
layout annotation or ``RepoTags`` names. The repository must exist (as for a push).

Both act on a server when an endpoint is given or configured (``--endpoint-url``,
``AWS_ENDPOINT_URL_ECR``, ``AWS_ENDPOINT_URL``, a profile's ``endpoint_url``, as for
``openecr <ecr command>``; see :mod:`openecr.cli.image_remote`), else on the local store
(``--data-dir``, ``OPENECR_DATA_DIR``, ``./.openecr``) of the default account and region;
``--registry-id`` names another account. On a terminal, stderr shows a progress bar of the
bytes written or stored; elsewhere the output is the result lines alone."""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, Protocol

import httpx

from openecr.cli.progress import Progress, for_stream
from openecr.config import ConfigError, from_env

if TYPE_CHECKING:
    from openecr.service.registry import Registry

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
INDEXES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
IMAGES = (OCI_MANIFEST, "application/vnd.docker.distribution.manifest.v2+json")
REF_NAME = "org.opencontainers.image.ref.name"
CHUNK = 1 << 20


class ImageError(Exception):
    """What the command prints before exiting 1."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="openecr image", description=(__doc__ or "").split("\n\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    export = commands.add_parser(
        "export", help="write an image to a tar (docker load, skopeo, OCI layout)"
    )
    export.add_argument("reference", help="REPOSITORY:TAG or REPOSITORY@DIGEST")
    export.add_argument("-o", "--output", required=True, help="the tar file to write")
    export.add_argument(
        "--format",
        choices=("docker-archive", "oci"),
        default="docker-archive",
        help="docker-archive (default): an OCI layout with docker's manifest.json too; "
        "oci: the layout alone",
    )
    export.add_argument(
        "--platform",
        default="linux/amd64",
        help="the image of an index that manifest.json names (os/arch[/variant], linux/amd64)",
    )
    imp = commands.add_parser("import", help="store the images of a tar (docker save, OCI layout)")
    imp.add_argument("file", help="a docker save archive or an OCI layout tar (maybe gzipped)")
    imp.add_argument("--repository-name", required=True, help="the (existing) repository")
    imp.add_argument("--image-tag", help="the tag to give the image (default: the archive's)")
    for sub in (export, imp):
        sub.add_argument(
            "--data-dir", help="the local store (OPENECR_DATA_DIR, ./.openecr), without a server"
        )
        sub.add_argument("--registry-id", help="the account (default: the caller's)")
        sub.add_argument(
            "--endpoint-url",
            help="a server to export from or import into (else AWS_ENDPOINT_URL_ECR, "
            "AWS_ENDPOINT_URL or the profile's endpoint_url; none: the local store)",
        )
        sub.add_argument("--region", help="the region, with a server (else the configured one)")
        sub.add_argument("--profile", help="the AWS profile of credentials and settings")
        sub.add_argument("--ca-bundle", help="CA certificates to verify a TLS server with")
        sub.add_argument(
            "--no-verify-ssl",
            dest="verify_ssl",
            action="store_false",
            help="do not verify a TLS server's certificate",
        )
    return parser


class ImageStore(Protocol):
    """Where images are read and written: the local store or a server."""

    def manifest(
        self, name: str, tag: str | None, digest: str | None
    ) -> tuple[bytes, str, str]: ...
    def blob(self, name: str, digest: str) -> Iterator[bytes]: ...
    def has_blob(self, name: str, digest: str) -> bool: ...
    def put_blob(self, name: str, digest: str, chunks: Iterator[bytes]) -> None: ...
    def put_manifest(self, name: str, raw: bytes, media_type: str, tag: str | None) -> str: ...
    def require_repository(self, name: str) -> None: ...


def run(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    from botocore.exceptions import BotoCoreError, ClientError

    from openecr.cli import image_remote

    try:
        endpoint = args.endpoint_url or image_remote.configured(args.profile)
    except BotoCoreError as error:
        print(f"openecr: {error}", file=sys.stderr)
        return 2
    if endpoint and args.data_dir:
        print(
            f"openecr: --data-dir is the local store, but an endpoint is configured ({endpoint})",
            file=sys.stderr,
        )
        return 2
    progress = for_stream(sys.stderr, "exporting" if args.command == "export" else "importing")
    try:
        if endpoint:
            remote = image_remote.open_remote(
                endpoint,
                args.profile,
                args.region,
                args.ca_bundle,
                args.verify_ssl,
                args.registry_id,
            )
            try:
                return _act(args, remote, progress)
            finally:
                remote.close()
        return _local(args, progress)
    except (
        ImageError,
        image_remote.RemoteError,
        OSError,
        tarfile.TarError,
        ClientError,
        BotoCoreError,
        httpx.HTTPError,
    ) as error:
        progress.finish()
        print(f"openecr image {args.command}: {_message(error)}", file=sys.stderr)
        return 1


def _local(args: argparse.Namespace, progress: Progress) -> int:
    try:
        config = from_env(None, data_dir=args.data_dir)
    except ConfigError as error:
        print(f"openecr: {error}", file=sys.stderr)
        return 2
    from openecr.bootstrap import build_runtime
    from openecr.errors import OpenEcrError

    runtime = build_runtime(config)
    try:
        store = Store(runtime.registry, args.registry_id or config.account_id)
        return _act(args, store, progress)
    except OpenEcrError as error:
        progress.finish()
        print(f"openecr image {args.command}: {_message(error)}", file=sys.stderr)
        return 1
    finally:
        runtime.close()


def _act(args: argparse.Namespace, store: ImageStore, progress: Progress) -> int:
    if args.command == "export":
        result = export(store, args.reference, args.output, args.format, args.platform, progress)
        progress.finish()
        print(result)
    else:
        lines = import_archive(store, args.file, args.repository_name, args.image_tag, progress)
        progress.finish()
        for line in lines:
            print(line)
    return 0


def _message(error: BaseException) -> str:
    from botocore.exceptions import ClientError

    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Message") or error)
    return str(getattr(error, "message", None) or error)


class Store:
    """The local store's images of one registry, through the services (as the APIs use them)."""

    def __init__(self, registry: Registry, account: str) -> None:
        self.registry = registry
        self.key = registry.settings.registry_key(account)

    def manifest(self, name: str, tag: str | None, digest: str | None) -> tuple[bytes, str, str]:
        """The stored bytes, media type and digest of an image."""
        from openecr.domain.model import ImageId

        record = self.registry.images.lookup(self.key, name, ImageId(digest=digest, tag=tag))
        return record.manifest, record.media_type, record.digest

    def blob(self, name: str, digest: str) -> Iterator[bytes]:
        from openecr.domain.digest import Digest

        found = self.registry.blobs.stat(self.key, name, Digest(digest))
        return iter(self.registry.blobs.read(found).chunks)

    def has_blob(self, name: str, digest: str) -> bool:
        layers, _ = self.registry.blobs.check(self.key, name, [digest])
        return bool(layers)

    def put_blob(self, name: str, digest: str, chunks: Iterator[bytes]) -> None:
        from openecr.domain.digest import Digest

        blobs = self.registry.blobs
        session = blobs.initiate(self.key, name)
        try:
            blobs.append(self.key, name, session.id, chunks)
        except BaseException:
            blobs.cancel(self.key, name, session.id)
            raise
        blobs.complete(self.key, name, session.id, Digest(digest))

    def put_manifest(self, name: str, raw: bytes, media_type: str, tag: str | None) -> str:
        result = self.registry.images.store_manifest(
            self.key, name, raw, media_type, tag, None, idempotent=True
        )
        return str(result.image.digest)

    def require_repository(self, name: str) -> None:
        self.registry.repositories.describe(self.key, [name], None, None)


# --- export -------------------------------------------------------------------------------


def _parse_reference(reference: str) -> tuple[str, str | None, str | None]:
    """(repository, tag, digest) of ``name:tag`` or ``name@digest`` (a bare name: latest)."""
    name, at, digest = reference.partition("@")
    if at:
        return name, None, digest
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1 :], None
    return name, "latest", None


def _platform(descriptor: dict[str, Any]) -> str:
    p = descriptor.get("platform") or {}
    parts = [str(p.get("os", "")), str(p.get("architecture", ""))]
    if p.get("variant"):
        parts.append(str(p["variant"]))
    return "/".join(parts)


@dataclass
class _Writer:
    """A tar being written: each blob once, under ``blobs/<algorithm>/<hex>``."""

    tar: tarfile.TarFile
    progress: Progress
    written: set[str] = field(default_factory=set)

    def add(self, path: str, data: bytes) -> None:
        info = tarfile.TarInfo(path)
        info.size = len(data)
        info.mode = 0o644
        self.tar.addfile(info, io.BytesIO(data))

    def add_blob(self, digest: str, size: int, chunks: Iterator[bytes]) -> None:
        if digest in self.written:
            return
        self.written.add(digest)
        info = tarfile.TarInfo(_blob_path(digest))
        info.size = size
        info.mode = 0o644
        self.tar.addfile(info, _ChunkReader(self.progress.chunks(chunks)))
        self.progress.blob_done()


class _ChunkReader(io.RawIOBase):
    """A file over an iterator of chunks (what tarfile copies from)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks
        self.buffer = b""

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self.buffer) < size:
            chunk = next(self.chunks, None)
            if chunk is None:
                break
            self.buffer += chunk
        if size < 0:
            data, self.buffer = self.buffer, b""
        else:
            data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data


def _blob_path(digest: str) -> str:
    algorithm, _, hexa = digest.partition(":")
    return f"blobs/{algorithm}/{hexa}"


class _Manifests:
    """A store whose manifests are fetched once (export walks them twice)."""

    def __init__(self, store: ImageStore) -> None:
        self.store = store
        self.seen: dict[tuple[str, str | None, str | None], tuple[bytes, str, str]] = {}

    def manifest(self, name: str, tag: str | None, digest: str | None) -> tuple[bytes, str, str]:
        key = (name, tag, digest)
        if key not in self.seen:
            self.seen[key] = self.store.manifest(name, tag, digest)
        return self.seen[key]

    def blob(self, name: str, digest: str) -> Iterator[bytes]:
        return self.store.blob(name, digest)


def _sizes(
    store: _Manifests, name: str, raw: bytes, media_type: str, digest: str
) -> dict[str, int]:
    """digest -> size of every blob and manifest an export of this manifest writes."""
    doc = json.loads(raw)
    found = {digest: len(raw)}
    if media_type in INDEXES:
        for child in doc.get("manifests") or ():
            child_raw, child_type, child_digest = store.manifest(name, None, child["digest"])
            found.update(_sizes(store, name, child_raw, child_type, child_digest))
    elif media_type in IMAGES:
        for descriptor in [doc["config"], *doc.get("layers", ())]:
            if not descriptor.get("urls"):
                found[descriptor["digest"]] = int(descriptor["size"])
    return found


def export(
    store: ImageStore,
    reference: str,
    output: str,
    fmt: str,
    platform: str,
    progress: Progress | None = None,
) -> str:
    """Write the image ``reference`` names to ``output``; return what was written."""
    progress = progress or Progress(None, "")
    name, tag, digest = _parse_reference(reference)
    cached = _Manifests(store)
    raw, media_type, image_digest = cached.manifest(name, tag, digest)
    progress.start(sum(_sizes(cached, name, raw, media_type, image_digest).values()))
    with tarfile.open(output, "w", format=tarfile.PAX_FORMAT) as tar:
        writer = _Writer(tar, progress)
        docker_image = _write_manifest(
            cached, writer, name, raw, media_type, image_digest, platform
        )
        writer.add("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        descriptor: dict[str, Any] = {
            "mediaType": media_type,
            "digest": image_digest,
            "size": len(raw),
        }
        if tag is not None:
            descriptor["annotations"] = {
                REF_NAME: tag,
                "io.containerd.image.name": f"{name}:{tag}",
            }
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [descriptor]}
        writer.add("index.json", json.dumps(index, indent=2).encode())
        if fmt == "docker-archive":
            if docker_image is None:
                raise ImageError(
                    f"{reference} has no {platform} image for docker's manifest.json: choose "
                    "another --platform, or --format oci"
                )
            config, layers = docker_image
            entry = {
                "Config": _blob_path(config),
                "RepoTags": [f"{name}:{tag}"] if tag is not None else [],
                "Layers": [_blob_path(d) for d in layers],
            }
            writer.add("manifest.json", json.dumps([entry]).encode())
    return f"exported {name}@{image_digest} ({len(writer.written)} blobs) to {output}"


def _write_manifest(
    store: _Manifests,
    writer: _Writer,
    name: str,
    raw: bytes,
    media_type: str,
    digest: str,
    platform: str,
) -> tuple[str, list[str]] | None:
    """Write a manifest with what it references; the (config, layers) of the image docker's
    manifest.json names, if any."""
    doc = json.loads(raw)
    found: tuple[str, list[str]] | None = None
    if media_type in INDEXES:
        for child in doc.get("manifests") or ():
            child_raw, child_type, child_digest = store.manifest(name, None, child["digest"])
            image = _write_manifest(
                store, writer, name, child_raw, child_type, child_digest, platform
            )
            if found is None and _platform(child) == platform:
                found = image
    elif media_type in IMAGES:
        for descriptor in [doc["config"], *doc.get("layers", ())]:
            if descriptor.get("urls"):
                continue  # a foreign layer is not stored here
            writer.add_blob(
                descriptor["digest"], descriptor["size"], store.blob(name, descriptor["digest"])
            )
        found = (doc["config"]["digest"], [d["digest"] for d in doc.get("layers", ())])
    else:
        raise ImageError(f"{media_type} images cannot be exported (schema 1: pull and re-push)")
    writer.add_blob(digest, len(raw), iter((raw,)))
    return found


# --- import -------------------------------------------------------------------------------


def _hash_file(handle: IO[bytes]) -> tuple[str, int]:
    hasher = hashlib.sha256()
    size = 0
    while chunk := handle.read(CHUNK):
        hasher.update(chunk)
        size += len(chunk)
    return f"sha256:{hasher.hexdigest()}", size


def _chunks(handle: IO[bytes]) -> Iterator[bytes]:
    while chunk := handle.read(CHUNK):
        yield chunk


class _Archive:
    """The members of a tar, read by path (``./`` prefixes ignored)."""

    def __init__(self, tar: tarfile.TarFile, store: ImageStore, progress: Progress) -> None:
        self.tar = tar
        self.store = store
        self.progress = progress
        self.members = {m.name.removeprefix("./"): m for m in tar.getmembers() if m.isfile()}

    def has(self, path: str) -> bool:
        return path in self.members

    def size(self, path: str) -> int:
        member = self.members.get(path)
        return member.size if member is not None else 0

    def store_blob(self, name: str, digest: str, path: str) -> None:
        """Store the file at ``path`` as blob ``digest`` unless the repository has it."""
        if self.store.has_blob(name, digest):
            self.progress.advance(self.size(path))
        else:
            self.store.put_blob(name, digest, self.progress.chunks(_chunks(self.open(path))))
        self.progress.blob_done()

    def open(self, path: str) -> IO[bytes]:
        member = self.members.get(path)
        handle = self.tar.extractfile(member) if member is not None else None
        if handle is None:
            raise ImageError(f"the archive has no {path}")
        return handle

    def read(self, path: str) -> bytes:
        return self.open(path).read()

    def json(self, path: str) -> Any:
        try:
            return json.loads(self.read(path))
        except ValueError:
            raise ImageError(f"{path} is not JSON") from None


def import_archive(
    store: ImageStore,
    path: str,
    name: str,
    tag: str | None,
    progress: Progress | None = None,
) -> list[str]:
    """Store the images of the tar at ``path`` in repository ``name``; lines to print."""
    progress = progress or Progress(None, "")
    store.require_repository(name)
    with tarfile.open(path, "r:*") as tar:
        archive = _Archive(tar, store, progress)
        if archive.has("index.json"):
            entries = archive.json("index.json").get("manifests") or []
            if tag is not None and len(entries) != 1:
                raise ImageError(f"--image-tag needs one image; the layout lists {len(entries)}")
            blobs: set[str] = set()
            for entry in entries:
                blobs |= _layout_blobs(archive, entry)
            progress.start(sum(archive.size(_blob_path(d)) for d in blobs))
            lines = []
            for entry in entries:
                entry_tag = tag or _layout_tag(entry)
                digest = _import_layout(store, archive, name, entry, entry_tag)
                lines.append(_imported(name, entry_tag, digest))
            return lines
        if archive.has("manifest.json"):
            images = archive.json("manifest.json")
            if tag is not None and len(images) != 1:
                raise ImageError(f"--image-tag needs one image; the archive holds {len(images)}")
            paths = {p for entry in images for p in [entry["Config"], *entry.get("Layers", ())]}
            progress.start(sum(archive.size(p) for p in paths))
            lines = []
            for entry in images:
                entry_tag = tag or _repo_tag(entry)
                digest = _import_docker(store, archive, name, entry, entry_tag)
                lines.append(_imported(name, entry_tag, digest))
            return lines
    raise ImageError(f"{path} is neither an OCI layout nor a docker archive")


def _layout_blobs(archive: _Archive, descriptor: dict[str, Any]) -> set[str]:
    """The config and layer digests of a layout's manifest (an index's: its children's)."""
    digest = str(descriptor["digest"])
    if not archive.has(_blob_path(digest)):
        return set()  # reported when it is imported
    doc = archive.json(_blob_path(digest))
    found: set[str] = set()
    for child in doc.get("manifests") or ():
        found |= _layout_blobs(archive, child)
    for blob in [doc.get("config"), *doc.get("layers", ())]:
        if isinstance(blob, dict) and not blob.get("urls") and "digest" in blob:
            found.add(str(blob["digest"]))
    return found


def _imported(name: str, tag: str | None, digest: str) -> str:
    return f"imported {name}{':' + tag if tag else ''}@{digest}"


def _layout_tag(entry: dict[str, Any]) -> str | None:
    from openecr.domain.names import is_tag

    annotations = entry.get("annotations") or {}
    for value in (
        annotations.get(REF_NAME),
        str(annotations.get("io.containerd.image.name", "")).rpartition(":")[2],
    ):
        if value and is_tag(value):
            return str(value)
    return None


def _repo_tag(entry: dict[str, Any]) -> str | None:
    from openecr.domain.names import is_tag

    for reference in entry.get("RepoTags") or ():
        candidate = str(reference).rpartition(":")[2]
        if "/" not in candidate and is_tag(candidate):
            return candidate
    return None


def _blob_from_layout(archive: _Archive, name: str, digest: str) -> None:
    archive.store_blob(name, digest, _blob_path(digest))


def _import_layout(
    store: ImageStore, archive: _Archive, name: str, descriptor: dict[str, Any], tag: str | None
) -> str:
    """Store a manifest of a layout with everything it references (children first)."""
    digest = str(descriptor["digest"])
    raw = archive.read(_blob_path(digest))
    doc = json.loads(raw)
    media_type = descriptor.get("mediaType") or doc.get("mediaType")
    if media_type in INDEXES:
        for child in doc.get("manifests") or ():
            _import_layout(store, archive, name, child, None)
    else:
        for blob in [doc.get("config"), *doc.get("layers", ())]:
            if isinstance(blob, dict) and not blob.get("urls"):
                _blob_from_layout(archive, name, str(blob["digest"]))
    return store.put_manifest(name, raw, str(media_type), tag)


_LAYER_TYPES = {
    b"\x1f\x8b": "application/vnd.oci.image.layer.v1.tar+gzip",
    b"\x28\xb5": "application/vnd.oci.image.layer.v1.tar+zstd",
}


def _import_docker(
    store: ImageStore, archive: _Archive, name: str, entry: dict[str, Any], tag: str | None
) -> str:
    """Store a docker archive's image as an OCI manifest over its config and layer files."""
    descriptors = []
    for path in [entry["Config"], *entry.get("Layers", ())]:
        digest, size = _hash_file(archive.open(path))
        head = archive.open(path).read(2)
        descriptors.append((path, digest, size, head))
        archive.store_blob(name, digest, path)
    (_, config_digest, config_size, _), layers = descriptors[0], descriptors[1:]
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config_size},
        "layers": [
            {
                "mediaType": _LAYER_TYPES.get(head, "application/vnd.oci.image.layer.v1.tar"),
                "digest": digest,
                "size": size,
            }
            for _, digest, size, head in layers
        ],
    }
    raw = json.dumps(manifest, indent=2).encode()
    return store.put_manifest(name, raw, OCI_MANIFEST, tag)
