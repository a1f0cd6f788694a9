"""podman (rootful, --tls-verify=false): push in both manifest formats, pull and run by tag and
by digest; BatchGetImage returns the manifest bytes podman sent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from e2e.conftest import PODMAN_RUN_LIMITS, Podman, Registry, unique
from e2e.images import DOCKER_MANIFEST, OCI_MANIFEST, sha256, small_image


@pytest.mark.parametrize(
    ("push_format", "media_type"),
    [("v2s2", DOCKER_MANIFEST), ("oci", OCI_MANIFEST)],
    ids=["docker-schema2", "oci"],
)
def test_push_pull_run_by_tag_and_digest(
    registry: Registry, podman: Podman, tmp_path: Path, push_format: str, media_type: str
) -> None:
    repo = unique("podman")
    image = small_image(repo)
    remote = registry.create_repository(repo)
    archive = image.write_docker_archive(tmp_path / "image.tar", f"{remote}:v1")
    podman("load", "-i", str(archive))
    mark = registry.proxy.mark()

    digest_file = tmp_path / "digest"
    podman(
        "push",
        "--tls-verify=false",
        "--format",
        push_format,
        "--digestfile",
        str(digest_file),
        f"{remote}:v1",
    )
    digest = digest_file.read_text().strip()

    [put] = registry.manifest_puts(mark, repo)
    assert put.body is not None
    assert sha256(put.body) == digest
    assert put.headers["content-type"] == media_type
    sent = json.loads(put.body)
    assert sent["mediaType"] == media_type
    assert len(sent["layers"]) == len(image.layers)
    got = registry.batch_get_manifest(repo, digest)
    assert got["imageManifest"].encode() == put.body
    assert got["imageManifestMediaType"] == media_type

    for reference in (f"{remote}:v1", f"{remote}@{digest}"):
        podman("rmi", "--all", "--force")
        podman("pull", "--tls-verify=false", reference)
        pulled = json.loads(podman("image", "inspect", reference).stdout)[0]
        assert f"{remote}@{digest}" in pulled["RepoDigests"]
        assert pulled["Digest"] == digest
        assert "sha256:" + pulled["Id"] == sent["config"]["digest"]
        run = podman("run", "--rm", "--network", "none", *PODMAN_RUN_LIMITS, reference)
        assert run.stdout == f"{repo}\n"
    podman("rmi", "--all", "--force")
