"""Cross-repository blob mounts: a second image that shares the busybox layer with an image in
another repository of the same registry is pushed without uploading that layer again."""

from __future__ import annotations

import json
from pathlib import Path

from e2e.conftest import Docker, Registry, Skopeo, docker_load, read_dir_image, unique
from e2e.images import busybox_layer, small_image


def _push_with_docker(
    registry: Registry, docker: Docker, tmp_path: Path, repo: str, marker: str
) -> dict[str, object]:
    remote = f"{registry.host}/{repo}"
    docker_load(docker, small_image(marker), f"{remote}:v1", tmp_path)
    mark = registry.proxy.mark()
    docker("push", f"{remote}:v1")
    [put] = registry.manifest_puts(mark, repo)
    assert put.body is not None
    return dict(json.loads(put.body))


def test_docker_push_mounts_shared_layer(
    registry: Registry, docker: Docker, tmp_path: Path
) -> None:
    first, second = unique("mount-src"), unique("mount-dst")
    for repo in (first, second):
        registry.create_repository(repo)
    sent_first = _push_with_docker(registry, docker, tmp_path, first, f"{first} one")
    base = sent_first["layers"][0]["digest"]  # type: ignore[index]
    mark = registry.proxy.mark()

    sent_second = _push_with_docker(registry, docker, tmp_path, second, f"{second} two")

    assert sent_second["layers"][0]["digest"] == base  # type: ignore[index]
    _assert_mounted(registry, mark, second, base)
    remote = f"{registry.host}/{second}:v1"
    docker("rmi", remote, f"{registry.host}/{first}:v1")
    docker("pull", remote)
    assert docker("run", "--rm", "--network", "none", remote).stdout == f"{second} two\n"
    docker("rmi", remote)


def test_skopeo_copy_mounts_shared_layer(
    registry: Registry, skopeo: Skopeo, tmp_path: Path
) -> None:
    first, second = unique("mount-src"), unique("mount-dst")
    images = {first: small_image(first), second: small_image(second)}
    for repo, image in images.items():
        source = image.write_dir(tmp_path / repo.replace("/", "_"))
        remote = registry.create_repository(repo)
        mark = registry.proxy.mark()
        skopeo.copy(f"dir:{source}", f"docker://{remote}:v1")

    base = busybox_layer().digest
    _assert_mounted(registry, mark, second, base)
    skopeo.copy(f"docker://{registry.host}/{second}:v1", f"dir:{tmp_path / 'back'}")
    assert read_dir_image(tmp_path / "back") == (images[second].manifest, images[second].blobs())


def _assert_mounted(registry: Registry, mark: int, repo: str, digest: str) -> None:
    exchanges = [e for e in registry.proxy.since(mark) if e.status != 401]
    mounts = [
        e
        for e in exchanges
        if e.method == "POST"
        and e.path == f"/v2/{repo}/blobs/uploads/"
        and e.query.get("mount") == digest
    ]
    # Clients pick a source among every repository they pushed the blob to (here `source`
    # and earlier tests' repositories) and try until one mount succeeds.
    assert mounts, [str(e) for e in exchanges]
    assert mounts[-1].status == 201, [str(e) for e in mounts]
    assert mounts[-1].query.get("from") not in (None, repo)
    assert mounts[-1].response_headers.get("docker-content-digest") == digest
    # No upload session carried the mounted blob's bytes.
    uploaded = [session[-1].query.get("digest") for session in registry.upload_sessions(mark, repo)]
    assert digest not in uploaded
    assert registry.get_blob(repo, digest)
    availability = registry.ecr().batch_check_layer_availability(
        repositoryName=repo, layerDigests=[digest]
    )
    assert [layer["layerAvailability"] for layer in availability["layers"]] == ["AVAILABLE"]
