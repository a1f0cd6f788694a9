"""A first end-to-end pass: push an image through the ECR API and get it back byte-exact."""

from __future__ import annotations

import hashlib
from typing import Any

from conftest import make_image


def test_put_then_batch_get_is_byte_exact(ecr: Any, repo: str) -> None:
    manifest = make_image(ecr, repo, seed="smoke")
    put = ecr.put_image(repositoryName=repo, imageManifest=manifest.decode(), imageTag="v1")
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    assert put["image"]["imageId"] == {"imageDigest": digest, "imageTag": "v1"}
    got = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "v1"}])
    assert got["failures"] == []
    [image] = got["images"]
    assert image["imageManifest"].encode() == manifest
    assert image["imageId"] == {"imageDigest": digest, "imageTag": "v1"}
    assert image["imageManifestMediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
