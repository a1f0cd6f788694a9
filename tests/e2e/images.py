"""Real, runnable container images built from scratch (no network): a statically linked busybox
layer plus generated layers, written as an OCI image layout, a ``dir:`` directory (skopeo's
byte-preserving transport, used for Docker schema 2) or a ``docker save`` archive.

Everything is deterministic for a given seed: tar entries carry fixed owners and times and gzip
carries no timestamp, so the shared busybox layer has one digest in every image.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import platform
import random
import struct
import tarfile
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path

BUSYBOX = Path("/bin/busybox")  # Debian busybox-static: a statically linked binary

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"

MiB = 1 << 20
CREATED = "2024-01-01T00:00:00Z"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def goarch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(
        machine, machine
    )


@dataclass(frozen=True)
class Layer:
    tar: bytes  # uncompressed
    gz: bytes  # what registries store

    @cached_property
    def diff_id(self) -> str:
        return sha256(self.tar)

    @cached_property
    def digest(self) -> str:
        return sha256(self.gz)


def _tar(files: dict[str, tuple[bytes, int]]) -> bytes:
    """A tar of ``path -> (content, mode)``, parent directories included, all reproducible."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs = sorted({str(Path(p).parent) for p in files} - {"."})
        for directory in dirs:
            info = tarfile.TarInfo(directory)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
            tar.addfile(info)
        for path, (content, mode) in sorted(files.items()):
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(content), mode, 0
            tar.addfile(info, io.BytesIO(content))
    return out.getvalue()


def make_layer(files: dict[str, tuple[bytes, int]]) -> Layer:
    raw = _tar(files)
    return Layer(raw, gzip.compress(raw, compresslevel=1, mtime=0))


def is_static_elf(binary: bytes) -> bool:
    """A 64-bit little-endian ELF without a PT_INTERP header (needs no dynamic loader)."""
    if binary[:6] != b"\x7fELF\x02\x01":
        return False
    (phoff,) = struct.unpack_from("<Q", binary, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", binary, 0x36)
    return all(
        struct.unpack_from("<I", binary, phoff + i * phentsize)[0] != 3 for i in range(phnum)
    )


@cache
def busybox_layer() -> Layer:
    """``/bin/busybox`` and ``/bin/sh``: the base layer every test image shares."""
    binary = BUSYBOX.read_bytes()
    if not is_static_elf(binary):
        raise RuntimeError(f"{BUSYBOX} is not a static binary: install busybox-static")
    return make_layer({"bin/busybox": (binary, 0o755), "bin/sh": (binary, 0o755)})


def marker_layer(text: str) -> Layer:
    """A small layer whose file ``/etc/e2e-marker`` makes an image unique."""
    return make_layer({"etc/e2e-marker": (text.encode() + b"\n", 0o644)})


def random_layer(seed: str, size: int) -> Layer:
    data = random.Random(seed).randbytes(size)
    return make_layer({f"data/{hashlib.sha256(seed.encode()).hexdigest()[:12]}.bin": (data, 0o644)})


@dataclass
class Image:
    """An image whose manifest, config and layer blobs are known byte for byte."""

    layers: list[Layer]
    marker: str
    oci: bool = False
    config: bytes = field(init=False)
    manifest: bytes = field(init=False)

    def __post_init__(self) -> None:
        config = {
            "created": CREATED,
            "architecture": goarch(),
            "os": "linux",
            "config": {
                "Env": ["PATH=/bin", f"E2E_MARKER={self.marker}"],
                "Cmd": ["/bin/busybox", "cat", "/etc/e2e-marker"],
            },
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in self.layers]},
            "history": [{"created": CREATED, "created_by": "openecr e2e"} for _ in self.layers],
        }
        self.config = json.dumps(config, indent=2, sort_keys=True).encode()
        layer_type = OCI_LAYER if self.oci else DOCKER_LAYER
        manifest = {
            "schemaVersion": 2,
            "mediaType": self.media_type,
            "config": {
                "mediaType": OCI_CONFIG if self.oci else DOCKER_CONFIG,
                "size": len(self.config),
                "digest": sha256(self.config),
            },
            "layers": [
                {"mediaType": layer_type, "size": len(layer.gz), "digest": layer.digest}
                for layer in self.layers
            ],
        }
        # Three-space indentation: bytes no client would produce by re-serializing.
        self.manifest = json.dumps(manifest, indent=3).encode()

    @property
    def media_type(self) -> str:
        return OCI_MANIFEST if self.oci else DOCKER_MANIFEST

    @property
    def digest(self) -> str:
        return sha256(self.manifest)

    @property
    def config_digest(self) -> str:
        return sha256(self.config)

    @property
    def size(self) -> int:
        return sum(len(layer.gz) for layer in self.layers)

    def blobs(self) -> dict[str, bytes]:
        """Every blob the manifest references, by digest."""
        found = {self.config_digest: self.config}
        found.update((layer.digest, layer.gz) for layer in self.layers)
        return found

    def write_oci_layout(self, directory: Path, tag: str) -> Path:
        """An OCI image layout (skopeo's ``oci:DIR:TAG``)."""
        blobs = directory / "blobs" / "sha256"
        blobs.mkdir(parents=True, exist_ok=True)
        for digest, data in {**self.blobs(), self.digest: self.manifest}.items():
            (blobs / digest.removeprefix("sha256:")).write_bytes(data)
        (directory / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
        index = {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": self.media_type,
                    "digest": self.digest,
                    "size": len(self.manifest),
                    "annotations": {"org.opencontainers.image.ref.name": tag},
                }
            ],
        }
        (directory / "index.json").write_text(json.dumps(index))
        return directory

    def write_dir(self, directory: Path) -> Path:
        """containers/image's ``dir:`` transport: the manifest and blobs stored verbatim."""
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "version").write_text("Directory Transport Version: 1.1\n")
        (directory / "manifest.json").write_bytes(self.manifest)
        for digest, data in self.blobs().items():
            (directory / digest.removeprefix("sha256:")).write_bytes(data)
        return directory

    def write_docker_archive(self, path: Path, reference: str) -> Path:
        """A ``docker save`` tarball (for ``docker load``) with uncompressed layers."""
        entries: dict[str, bytes] = {}
        config_name = self.config_digest.removeprefix("sha256:") + ".json"
        entries[config_name] = self.config
        layer_names = []
        for layer in self.layers:
            name = layer.diff_id.removeprefix("sha256:") + "/layer.tar"
            entries[name] = layer.tar
            layer_names.append(name)
        saved = [{"Config": config_name, "RepoTags": [reference], "Layers": layer_names}]
        entries["manifest.json"] = json.dumps(saved).encode()
        with tarfile.open(path, "w") as tar:
            for name, data in entries.items():
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
        return path


def small_image(marker: str, *, oci: bool = False) -> Image:
    """busybox plus a marker layer: about 1 MiB."""
    return Image([busybox_layer(), marker_layer(marker)], marker, oci=oci)


def big_image(
    marker: str, *, oci: bool = False, layers: int = 4, layer_size: int = 27 * MiB
) -> Image:
    """busybox, ``layers`` layers of random data (over 100 MiB in all) and a marker layer."""
    generated = [random_layer(f"{marker}-{i}", layer_size) for i in range(layers)]
    return Image([busybox_layer(), *generated, marker_layer(marker)], marker, oci=oci)
