"""``openecr image export`` and ``openecr image import`` on the local store: tars that docker
load, skopeo and OCI layouts understand, round trips that keep digests and image IDs."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from conftest import Server, ServerFactory, upload_blob
from e2e.images import Image, goarch, marker_layer, random_layer
from openecr.cli.main import main

SKOPEO = "/usr/bin/skopeo"
INDEX = "application/vnd.oci.image.index.v1+json"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def image(marker: str, *, oci: bool = False) -> Image:
    return Image([marker_layer(marker), random_layer(marker, 4096)], marker, oci=oci)


def push(client: Any, repo: str, img: Image, tag: str | None = None) -> str:
    for data in img.blobs().values():
        upload_blob(client, repo, data)
    args: dict[str, Any] = {"repositoryName": repo, "imageManifest": img.manifest.decode()}
    if tag:
        args["imageTag"] = tag
    args["imageManifestMediaType"] = img.media_type
    return str(client.put_image(**args)["image"]["imageId"]["imageDigest"])


def push_index(client: Any, repo: str, images: dict[str, Image], tag: str) -> bytes:
    manifests = []
    for arch, img in images.items():
        push(client, repo, img)
        manifests.append(
            {
                "mediaType": img.media_type,
                "digest": img.digest,
                "size": len(img.manifest),
                "platform": {"os": "linux", "architecture": arch},
            }
        )
    raw = json.dumps({"schemaVersion": 2, "mediaType": INDEX, "manifests": manifests}).encode()
    client.put_image(
        repositoryName=repo, imageTag=tag, imageManifest=raw.decode(), imageManifestMediaType=INDEX
    )
    return raw


def stored(client: Any, repo: str, tag: str) -> tuple[str, bytes]:
    found = client.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": tag}])["images"]
    assert found, f"{repo}:{tag} is not stored"
    return found[0]["imageId"]["imageDigest"], found[0]["imageManifest"].encode()


def image_cli(server: Server, *args: str) -> int:
    return main(["image", *args, "--data-dir", str(server.data_dir)])


@pytest.fixture
def local(make_server: ServerFactory) -> tuple[Server, Any]:
    server = make_server()
    client = server.client()
    for name in ("team/app", "team/copy"):
        client.create_repository(repositoryName=name)
    return server, client


def test_export_writes_an_oci_layout_and_dockers_manifest_json(
    local: tuple[Server, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server, client = local
    img = image("export")
    digest = push(client, "team/app", img, "v1")
    out = tmp_path / "app.tar"
    assert image_cli(server, "export", "team/app:v1", "-o", str(out)) == 0
    assert f"exported team/app@{digest}" in capsys.readouterr().out
    with tarfile.open(out) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    [entry] = json.loads(files["index.json"])["manifests"]
    assert (entry["digest"], entry["size"]) == (digest, len(img.manifest))
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == "v1"
    for blob_digest, data in {**img.blobs(), digest: img.manifest}.items():
        assert files[f"blobs/sha256/{blob_digest.removeprefix('sha256:')}"] == data
    [saved] = json.loads(files["manifest.json"])
    assert saved["RepoTags"] == ["team/app:v1"]
    assert files[saved["Config"]] == img.config
    assert [files[p] for p in saved["Layers"]] == [layer.gz for layer in img.layers]


def test_a_round_trip_keeps_the_manifest_byte_for_byte(
    local: tuple[Server, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server, client = local
    img = image("round", oci=True)
    digest = push(client, "team/app", img, "v1")
    out = tmp_path / "app.tar"
    assert image_cli(server, "export", f"team/app@{digest}", "-o", str(out), "--format", "oci") == 0
    with tarfile.open(out) as tar:
        assert "manifest.json" not in tar.getnames()
    code = image_cli(
        server, "import", str(out), "--repository-name", "team/copy", "--image-tag", "x"
    )
    assert code == 0
    assert f"imported team/copy:x@{digest}" in capsys.readouterr().out
    assert stored(client, "team/copy", "x") == (digest, img.manifest)


def test_an_index_goes_out_and_back_whole(local: tuple[Server, Any], tmp_path: Path) -> None:
    server, client = local
    images = {"amd64": image("amd"), "arm64": image("arm")}
    raw = push_index(client, "team/app", images, "multi")
    out = tmp_path / "multi.tar"
    args = ["export", "team/app:multi", "-o", str(out), "--platform", "linux/arm64"]
    assert image_cli(server, *args) == 0
    with tarfile.open(out) as tar:
        saved = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    assert saved[0]["Config"].endswith(images["arm64"].config_digest.removeprefix("sha256:"))
    assert image_cli(server, "import", str(out), "--repository-name", "team/copy") == 0
    assert stored(client, "team/copy", "multi") == (sha256(raw), raw)
    for img in images.values():
        got = client.batch_get_image(
            repositoryName="team/copy", imageIds=[{"imageDigest": img.digest}]
        )["images"]
        assert got[0]["imageManifest"].encode() == img.manifest


def test_a_docker_save_archive_imports_with_its_image_id(
    local: tuple[Server, Any], tmp_path: Path
) -> None:
    server, client = local
    img = image("legacy")
    archive = img.write_docker_archive(tmp_path / "saved.tar", "example.com/app:1.2")
    assert image_cli(server, "import", str(archive), "--repository-name", "team/copy") == 0
    _, manifest = stored(client, "team/copy", "1.2")
    parsed = json.loads(manifest)
    assert parsed["config"]["digest"] == img.config_digest  # docker's image ID
    assert [layer["digest"] for layer in parsed["layers"]] == [
        sha256(layer.tar) for layer in img.layers
    ]
    assert {layer["mediaType"] for layer in parsed["layers"]} == {
        "application/vnd.oci.image.layer.v1.tar"
    }


def test_bad_requests_fail_with_a_message(
    local: tuple[Server, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server, _ = local
    out = tmp_path / "x.tar"
    assert image_cli(server, "export", "team/app:none", "-o", str(out)) == 1
    assert "Requested image not found" in capsys.readouterr().err
    img = image("bad")
    archive = img.write_docker_archive(tmp_path / "saved.tar", "app:1")
    assert image_cli(server, "import", str(archive), "--repository-name", "no/such") == 1
    assert "no/such" in capsys.readouterr().err
    (tmp_path / "junk.tar").write_bytes(b"not a tar")
    assert (
        image_cli(server, "import", str(tmp_path / "junk.tar"), "--repository-name", "team/copy")
        == 1
    )
    assert "openecr image import:" in capsys.readouterr().err


# --- with skopeo (starts processes) -------------------------------------------------------------


def skopeo(*args: str) -> subprocess.CompletedProcess[bytes]:
    assert shutil.which(SKOPEO), "skopeo missing: make test installs it"
    result = subprocess.run([SKOPEO, *args], capture_output=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr.decode()
    return result


@pytest.mark.slow
def test_skopeo_reads_an_export_as_docker_archive_and_oci_archive(
    local: tuple[Server, Any], tmp_path: Path
) -> None:
    server, client = local
    img = image("skopeo-read")
    digest = push(client, "team/app", img, "v1")
    out = tmp_path / "app.tar"
    assert image_cli(server, "export", "team/app:v1", "-o", str(out)) == 0
    config = skopeo("inspect", "--config", "--raw", f"docker-archive:{out}").stdout
    assert sha256(config) == img.config_digest
    skopeo("copy", "--preserve-digests", f"oci-archive:{out}", f"dir:{tmp_path / 'dir'}")
    assert (tmp_path / "dir" / "manifest.json").read_bytes() == img.manifest
    assert sha256(img.manifest) == digest


@pytest.mark.slow
def test_an_archive_skopeo_writes_imports_with_its_image_id(
    local: tuple[Server, Any], tmp_path: Path
) -> None:
    server, client = local
    img = image("skopeo-write", oci=True)
    layout = img.write_oci_layout(tmp_path / "layout", "v1")
    for transport in ("docker-archive", "oci-archive"):
        out = tmp_path / f"{transport}.tar"
        target = (
            f"{transport}:{out}:app:v1"
            if transport == "docker-archive"
            else f"{transport}:{out}:v1"
        )
        skopeo("copy", f"oci:{layout}:v1", target)
        code = image_cli(
            server, "import", str(out), "--repository-name", "team/copy", "--image-tag", transport
        )
        assert code == 0
        _, manifest = stored(client, "team/copy", transport)
        assert json.loads(manifest)["config"]["digest"] == img.config_digest
    assert goarch()
