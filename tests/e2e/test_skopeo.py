"""skopeo: Docker schema 2 and OCI images (one over 100 MiB in six layers) copied in and out
byte for byte, by tag and by digest; each blob goes up as one PATCH with a Content-Length."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from e2e.conftest import Registry, Skopeo, assert_patch_uploads, read_dir_image, unique
from e2e.images import Image, MiB, big_image, small_image


def _schema2(marker: str) -> Image:
    return small_image(marker)


def _oci(marker: str) -> Image:
    return small_image(marker, oci=True)


def _oci_big(marker: str) -> Image:
    return big_image(marker, oci=True)


@pytest.mark.parametrize(
    ("build", "transport"),
    [(_schema2, "dir"), (_oci, "oci"), (_oci_big, "oci")],
    ids=["docker-schema2", "oci", "oci-multilayer-100MiB"],
)
def test_copy_round_trip_is_byte_exact(
    registry: Registry,
    skopeo: Skopeo,
    tmp_path: Path,
    build: Callable[[str], Image],
    transport: str,
) -> None:
    repo = unique("skopeo")
    image = build(repo)
    remote = registry.create_repository(repo)
    if transport == "dir":
        source = f"dir:{image.write_dir(tmp_path / 'src')}"
    else:
        source = f"oci:{image.write_oci_layout(tmp_path / 'src', 'v1')}:v1"
    mark = registry.proxy.mark()

    skopeo.copy(source, f"docker://{remote}:v1")

    # The manifest the registry got is the one we wrote, and it serves it back unchanged.
    [put] = registry.manifest_puts(mark, repo)
    assert put.body == image.manifest
    sizes = {digest: len(blob) for digest, blob in image.blobs().items()}
    assert_patch_uploads(registry, mark, repo, sizes, framing="content-length")
    assert put.headers["content-type"] == image.media_type
    assert skopeo.raw_manifest(f"docker://{remote}:v1") == image.manifest
    assert skopeo.raw_manifest(f"docker://{remote}@{image.digest}") == image.manifest

    # Every blob comes back byte-exact, by digest.
    skopeo.copy(f"docker://{remote}@{image.digest}", f"dir:{tmp_path / 'back'}")
    manifest, blobs = read_dir_image(tmp_path / "back")
    assert manifest == image.manifest
    assert blobs == image.blobs()
    if build is _oci_big:
        assert image.size > 100 * MiB
        assert len(json.loads(manifest)["layers"]) == 6

    got = registry.batch_get_manifest(repo, image.digest)
    assert got["imageManifest"].encode() == image.manifest
    assert got["imageManifestMediaType"] == image.media_type
    assert got["imageId"] == {"imageDigest": image.digest, "imageTag": "v1"}
