"""The images every server gets: the same bytes everywhere, generated here (no network).

* Bulk images (``bulk``): OCI manifests sharing one config and five small layers, each made
  unique by an annotation, about 1.3 kB each: what BatchGetImage and manifest GETs return.
* Big images (``Image.big``): Docker schema 2 images of real gzipped tar layers of random
  data, written as a skopeo ``dir:`` copy, for push/pull and blob downloads.
"""

from __future__ import annotations

import gzip
import io
import json
import random
import tarfile
from dataclasses import dataclass
from pathlib import Path

from bench.clients import sha256

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
BULK_LAYERS = 5


def layer(seed: str, size: int) -> tuple[bytes, bytes]:
    """(tar, tar.gz) of one file of ``size`` seeded random bytes, reproducibly."""
    data = random.Random(seed).randbytes(size)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(f"data/{seed}.bin")
        info.size, info.mode, info.mtime = len(data), 0o644, 0
        tar.addfile(info, io.BytesIO(data))
    tar_bytes = raw.getvalue()
    return tar_bytes, gzip.compress(tar_bytes, compresslevel=1, mtime=0)


def config(diff_ids: list[str], marker: str) -> bytes:
    document = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["PATH=/bin", f"BENCH={marker}"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": "openecr bench"} for _ in diff_ids],
    }
    return json.dumps(document, sort_keys=True).encode()


@dataclass(frozen=True)
class Bulk:
    """Blobs shared by every bulk image, and a function for the ``i``-th manifest."""

    blobs: list[bytes]  # config first

    @staticmethod
    def make() -> Bulk:
        layers = [layer(f"bulk-{i}", 512 + i) for i in range(BULK_LAYERS)]
        cfg = config([sha256(tar) for tar, _ in layers], "bulk")
        return Bulk([cfg, *(gz for _, gz in layers)])

    def manifest(self, index: int) -> bytes:
        cfg, *layers = self.blobs
        document = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "size": len(cfg), "digest": sha256(cfg)},
            "layers": [
                {"mediaType": OCI_LAYER, "size": len(blob), "digest": sha256(blob)}
                for blob in layers
            ],
            "annotations": {"org.opencontainers.image.ref.name": f"bench-{index:05d}"},
        }
        return json.dumps(document, indent=2).encode()


def tag(index: int) -> str:
    return f"t{index:05d}"


@dataclass(frozen=True)
class Image:
    config: bytes
    layers: list[bytes]  # gzipped
    manifest: bytes

    @staticmethod
    def big(seed: str, layers: int, layer_size: int) -> Image:
        made = [layer(f"{seed}-{i}", layer_size) for i in range(layers)]
        cfg = config([sha256(tar) for tar, _ in made], seed)
        gz = [blob for _, blob in made]
        document = {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": DOCKER_CONFIG, "size": len(cfg), "digest": sha256(cfg)},
            "layers": [
                {"mediaType": DOCKER_LAYER, "size": len(blob), "digest": sha256(blob)}
                for blob in gz
            ],
        }
        return Image(cfg, gz, json.dumps(document, indent=3).encode())

    @property
    def size(self) -> int:
        return len(self.config) + sum(len(blob) for blob in self.layers) + len(self.manifest)

    def write_dir(self, directory: Path) -> Path:
        """containers/image's ``dir:`` transport: manifest and blobs stored verbatim."""
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "version").write_text("Directory Transport Version: 1.1\n")
        (directory / "manifest.json").write_bytes(self.manifest)
        for blob in [self.config, *self.layers]:
            (directory / sha256(blob).removeprefix("sha256:")).write_bytes(blob)
        return directory
