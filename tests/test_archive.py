"""Archive and pull times: UpdateImageStorageClass, imageStatus and its filters, archived
images refused by every pull, restores (by the API or by pushing again), lastRecordedPullTime."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from conftest import VENV_BIN, Server, ServerFactory, make_image

DOCKER = "application/vnd.docker.distribution.manifest.v2+json"


def error(call: Any, **params: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as caught:
        call(**params)
    return caught.value.response["Error"]["Code"], caught.value.response["Error"]["Message"]


def pushed(ecr: Any, repo: str, tag: str) -> tuple[bytes, str]:
    manifest = make_image(ecr, repo, seed=tag)
    ecr.put_image(repositoryName=repo, imageManifest=manifest.decode(), imageTag=tag)
    return manifest, "sha256:" + hashlib.sha256(manifest).hexdigest()


def detail(ecr: Any, repo: str, digest: str) -> dict[str, Any]:
    [found] = ecr.describe_images(repositoryName=repo, imageIds=[{"imageDigest": digest}])[
        "imageDetails"
    ]
    return dict(found)


def ids(ecr: Any, repo: str, status: str) -> list[str]:
    found = ecr.list_images(repositoryName=repo, filter={"imageStatus": status})["imageIds"]
    return sorted(i["imageTag"] for i in found)


def test_archive_and_restore(server: Server, ecr: Any, repo: str) -> None:
    _, old = pushed(ecr, repo, "old")
    pushed(ecr, repo, "new")
    assert detail(ecr, repo, old)["imageStatus"] == "ACTIVE"
    assert "lastArchivedAt" not in detail(ecr, repo, old)

    done = ecr.update_image_storage_class(
        repositoryName=repo, imageId={"imageTag": "old"}, targetStorageClass="ARCHIVE"
    )
    assert done["imageStatus"] == "ARCHIVED"
    assert done["imageId"] == {"imageDigest": old, "imageTag": "old"}
    assert (done["registryId"], done["repositoryName"]) == ("123456789012", repo)
    archived = detail(ecr, repo, old)
    assert archived["imageStatus"] == "ARCHIVED" and "lastArchivedAt" in archived
    assert ids(ecr, repo, "ARCHIVED") == ["old"]
    assert ids(ecr, repo, "ACTIVE") == ["new"]
    assert ids(ecr, repo, "ANY") == ["new", "old"]
    assert ids(ecr, repo, "ACTIVATING") == []
    described = ecr.describe_images(repositoryName=repo, filter={"imageStatus": "ARCHIVED"})
    assert [d["imageDigest"] for d in described["imageDetails"]] == [old]

    # an archived image cannot be pulled, through either API
    got = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "old"}])
    assert got["images"] == []
    assert [(f["failureCode"], f["imageId"]) for f in got["failures"]] == [
        ("ImageInaccessible", {"imageTag": "old"})
    ]
    assert "UpdateImageStorageClass" in got["failures"][0]["failureReason"]
    for method in ("GET", "HEAD"):
        for ref in ("old", old):
            answer = httpx.request(method, f"{server.endpoint}/v2/{repo}/manifests/{ref}")
            assert answer.status_code == 404
            if method == "GET":
                assert answer.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"

    restored = ecr.update_image_storage_class(
        repositoryName=repo, imageId={"imageDigest": old}, targetStorageClass="STANDARD"
    )
    assert restored["imageStatus"] == "ACTIVE"
    assert restored["imageId"] == {"imageDigest": old}
    after = detail(ecr, repo, old)
    assert after["imageStatus"] == "ACTIVE" and "lastActivatedAt" in after
    assert after["lastArchivedAt"] <= after["lastActivatedAt"]
    assert ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "old"}])["images"]
    assert httpx.get(f"{server.endpoint}/v2/{repo}/manifests/old").status_code == 200


def test_storage_class_errors(ecr: Any, repo: str) -> None:
    _, digest = pushed(ecr, repo, "v1")
    update = ecr.update_image_storage_class
    assert error(
        update, repositoryName=repo, imageId={"imageTag": "v1"}, targetStorageClass="STANDARD"
    ) == (
        "ImageStorageClassUpdateNotSupportedException",
        f"The image with digest '{digest}' is already in the STANDARD storage class",
    )
    update(repositoryName=repo, imageId={"imageTag": "v1"}, targetStorageClass="ARCHIVE")
    code, _ = error(
        update, repositoryName=repo, imageId={"imageTag": "v1"}, targetStorageClass="ARCHIVE"
    )
    assert code == "ImageStorageClassUpdateNotSupportedException"
    assert error(
        update, repositoryName=repo, imageId={"imageTag": "nope"}, targetStorageClass="ARCHIVE"
    ) == (
        "ImageNotFoundException",
        "The image with imageId {imageDigest:'None', imageTag:'nope'} does not exist within "
        f"the repository with name '{repo}' in the registry with id '123456789012'",
    )
    code, _ = error(
        update, repositoryName=repo, imageId={"imageDigest": "bad"}, targetStorageClass="ARCHIVE"
    )
    assert code == "InvalidParameterException"
    code, _ = error(
        update, repositoryName="no/such", imageId={"imageTag": "v1"}, targetStorageClass="ARCHIVE"
    )
    assert code == "RepositoryNotFoundException"


def test_pushing_an_archived_image_again_restores_it(server: Server, ecr: Any, repo: str) -> None:
    manifest, digest = pushed(ecr, repo, "v1")
    ecr.update_image_storage_class(
        repositoryName=repo, imageId={"imageTag": "v1"}, targetStorageClass="ARCHIVE"
    )
    again = ecr.put_image(repositoryName=repo, imageManifest=manifest.decode(), imageTag="v1")
    assert again["image"]["imageId"] == {"imageDigest": digest, "imageTag": "v1"}
    assert detail(ecr, repo, digest)["imageStatus"] == "ACTIVE"
    ecr.update_image_storage_class(
        repositoryName=repo, imageId={"imageTag": "v1"}, targetStorageClass="ARCHIVE"
    )
    put = httpx.put(
        f"{server.endpoint}/v2/{repo}/manifests/v1",
        content=manifest,
        headers={"Content-Type": DOCKER},
    )
    assert put.status_code == 201
    assert detail(ecr, repo, digest)["imageStatus"] == "ACTIVE"


def wait_for_pull_time(ecr: Any, repo: str, digest: str) -> float:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = detail(ecr, repo, digest).get("lastRecordedPullTime")
        if found is not None:
            return float(found.timestamp())
        time.sleep(0.1)
    raise AssertionError("no lastRecordedPullTime")


def test_pulls_record_their_time(server: Server, ecr: Any, repo: str) -> None:
    _, by_api = pushed(ecr, repo, "api")
    _, by_v2 = pushed(ecr, repo, "v2")
    _, checked = pushed(ecr, repo, "checked")
    before = time.time()
    ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "api"}])
    assert httpx.get(f"{server.endpoint}/v2/{repo}/manifests/v2").status_code == 200
    assert httpx.head(f"{server.endpoint}/v2/{repo}/manifests/checked").status_code == 200
    for digest in (by_api, by_v2):
        assert before - 1 <= wait_for_pull_time(ecr, repo, digest) <= time.time() + 1
    time.sleep(1.5)  # the writer runs every second: the HEAD had its chance
    assert "lastRecordedPullTime" not in detail(ecr, repo, checked)


def test_every_image_of_a_call_gets_its_time(server: Server, ecr: Any, repo: str) -> None:
    """A pull notes images by their key in the store: each image of one BatchGetImage call
    (and one pulled again later in the window) is recorded, and only those."""
    digests = {t: pushed(ecr, repo, t)[1] for t in ("a", "b", "c", "idle")}
    ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "a"}, {"imageTag": "b"}])
    ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "b"}, {"imageTag": "c"}])
    assert httpx.get(f"{server.endpoint}/v2/{repo}/manifests/a").status_code == 200
    for tag in ("a", "b", "c"):
        wait_for_pull_time(ecr, repo, digests[tag])
    time.sleep(1.5)  # the writer runs every second
    assert "lastRecordedPullTime" not in detail(ecr, repo, digests["idle"])


def test_pull_times_survive_a_restart(make_server: ServerFactory) -> None:
    server = make_server()
    ecr = server.client()
    ecr.create_repository(repositoryName="pulls")
    _, digest = pushed(ecr, "pulls", "v1")
    ecr.batch_get_image(repositoryName="pulls", imageIds=[{"imageTag": "v1"}])
    server.restart()  # the stop writes what was noted
    assert "lastRecordedPullTime" in detail(server.client(), "pulls", digest)


def test_no_pull_times_records_none(make_server: ServerFactory) -> None:
    server = make_server("--no-pull-times")
    ecr = server.client()
    ecr.create_repository(repositoryName="quiet")
    _, digest = pushed(ecr, "quiet", "v1")
    ecr.batch_get_image(repositoryName="quiet", imageIds=[{"imageTag": "v1"}])
    assert httpx.get(f"{server.endpoint}/v2/quiet/manifests/v1").status_code == 200
    server.restart()  # a stop writes whatever was noted: nothing was
    assert "lastRecordedPullTime" not in detail(server.client(), "quiet", digest)


@pytest.mark.slow
def test_update_image_storage_class_on_the_local_store(tmp_path: Path) -> None:
    """``openecr update-image-storage-class`` on a data dir, no server."""
    data = tmp_path / "data"
    openecr = [str(VENV_BIN / "openecr"), "--data-dir", str(data), "--output", "json"]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*openecr, *args], capture_output=True, text=True, env=env, timeout=120, check=False
        )

    assert run("create-repository", "--repository-name", "app").returncode == 0
    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers"}}'
    (tmp_path / "config.json").write_bytes(config)
    manifest = (
        '{"schemaVersion":2,"mediaType":"' + DOCKER + '","config":{"mediaType":'
        '"application/vnd.docker.container.image.v1+json","size":' + str(len(config)) + ","
        '"digest":"sha256:' + hashlib.sha256(config).hexdigest() + '"},"layers":[]}'
    )
    upload = run("initiate-layer-upload", "--repository-name", "app")
    assert upload.returncode == 0, upload.stderr
    upload_id = json.loads(upload.stdout)["uploadId"]
    part = run(
        "upload-layer-part", "--repository-name", "app", "--upload-id", upload_id,
        "--part-first-byte", "0", "--part-last-byte", str(len(config) - 1),
        "--layer-part-blob", f"fileb://{tmp_path / 'config.json'}",
    )  # fmt: skip
    assert part.returncode == 0, part.stderr
    done = run(
        "complete-layer-upload", "--repository-name", "app", "--upload-id", upload_id,
        "--layer-digests", "sha256:" + hashlib.sha256(config).hexdigest(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    put = run("put-image", "--repository-name", "app", "--image-tag", "v1",
              "--image-manifest", manifest)  # fmt: skip
    assert put.returncode == 0, put.stderr
    archived = run(
        "update-image-storage-class", "--repository-name", "app",
        "--image-id", "imageTag=v1", "--target-storage-class", "ARCHIVE",
    )  # fmt: skip
    assert archived.returncode == 0, archived.stderr
    assert json.loads(archived.stdout)["imageStatus"] == "ARCHIVED"
    listed = run("list-images", "--repository-name", "app", "--filter", "imageStatus=ARCHIVED")
    assert json.loads(listed.stdout)["imageIds"] == [
        {"imageDigest": "sha256:" + hashlib.sha256(manifest.encode()).hexdigest(),
         "imageTag": "v1"}
    ]  # fmt: skip
