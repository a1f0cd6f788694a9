"""docker (its own dockerd): push, pull and run by tag and by digest, a small image and one of
over 100 MiB in six layers. docker uploads each blob as one PATCH with HTTP chunked transfer
encoding; BatchGetImage returns the manifest bytes `docker push` sent."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from e2e.conftest import (
    Docker,
    Registry,
    assert_patch_uploads,
    docker_load,
    pushed_digest,
    unique,
)
from e2e.images import DOCKER_MANIFEST, Image, MiB, big_image, sha256, small_image


@pytest.mark.parametrize("build", [small_image, big_image], ids=["small", "multilayer-100MiB"])
def test_push_pull_run_by_tag_and_digest(
    registry: Registry, docker: Docker, tmp_path: Path, build: Callable[[str], Image]
) -> None:
    repo = unique("docker")
    image = build(repo)
    if build is big_image:
        assert image.size > 100 * MiB and len(image.layers) == 6
    remote = registry.create_repository(repo)
    docker_load(docker, image, f"{remote}:v1", tmp_path)
    mark = registry.proxy.mark()

    digest = pushed_digest(docker("push", f"{remote}:v1").stdout)

    # What docker sent: a schema 2 manifest over our config and one blob per layer.
    [put] = registry.manifest_puts(mark, repo)
    assert put.body is not None
    assert put.status == 201
    assert sha256(put.body) == digest
    assert put.headers["content-type"] == DOCKER_MANIFEST
    sent = json.loads(put.body)
    assert sent["config"]["digest"] == image.config_digest
    assert len(sent["layers"]) == len(image.layers)
    assert_patch_uploads(
        registry,
        mark,
        repo,
        {d["digest"]: d["size"] for d in [sent["config"], *sent["layers"]]},
        framing="transfer-encoding",
    )
    got = registry.batch_get_manifest(repo, digest)
    assert got["imageManifest"].encode() == put.body
    assert got["imageManifestMediaType"] == DOCKER_MANIFEST

    # Pull by tag into an empty daemon: same image ID (config digest), so same layers.
    docker("rmi", f"{remote}:v1")
    docker("pull", f"{remote}:v1")
    assert docker("image", "inspect", "-f", "{{.Id}}", f"{remote}:v1").stdout.strip() == (
        image.config_digest
    )
    run = docker("run", "--rm", "--network", "none", f"{remote}:v1")
    assert run.stdout == f"{repo}\n"

    # Pull and run by digest.
    docker("rmi", f"{remote}:v1")
    docker("pull", f"{remote}@{digest}")
    inspect = json.loads(docker("image", "inspect", f"{remote}@{digest}").stdout)[0]
    assert inspect["Id"] == image.config_digest
    assert inspect["RepoDigests"] == [f"{remote}@{digest}"]
    run = docker(
        "run", "--rm", "--network", "none", f"{remote}@{digest}", "/bin/busybox", "echo", "hi"
    )
    assert run.stdout == "hi\n"
    docker("rmi", f"{remote}@{digest}")
