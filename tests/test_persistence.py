"""What a server stored is there after a restart, and after a SIGKILL mid-way through pushes."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
from typing import Any

import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from conftest import ACCOUNT, ProcessServer, ServerFactory, make_image, upload_blob

ARN = f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/"
OCI = "application/vnd.oci.image.manifest.v1+json"
LATEST = {"filterType": "WILDCARD", "filter": "latest"}


def snapshot(ecr: Any) -> dict[str, Any]:
    """Everything observable about the registry through the ECR API."""
    state: dict[str, Any] = {"repositories": {}, "tags": {}, "images": {}, "ids": {}}
    for page in ecr.get_paginator("describe_repositories").paginate():
        for repo in page["repositories"]:
            name = repo["repositoryName"]
            state["repositories"][name] = repo
            state["tags"][name] = ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"])
            details = [
                d
                for p in ecr.get_paginator("describe_images").paginate(repositoryName=name)
                for d in p["imageDetails"]
            ]
            for d in details:  # pulls move it (kept across restarts: tests/test_archive.py)
                d.pop("lastRecordedPullTime", None)
            state["images"][name] = details
            state["ids"][name] = [
                i
                for p in ecr.get_paginator("list_images").paginate(repositoryName=name)
                for i in p["imageIds"]
            ]
    for value in state["tags"].values():
        value.pop("ResponseMetadata")
    return state


def manifests(ecr: Any, repo: str) -> dict[str, bytes]:
    ids = ecr.list_images(repositoryName=repo, maxResults=1000)["imageIds"]
    got = ecr.batch_get_image(
        repositoryName=repo, imageIds=[{"imageDigest": i["imageDigest"]} for i in ids]
    )
    assert got["failures"] == []
    return {i["imageId"]["imageDigest"]: i["imageManifest"].encode() for i in got["images"]}


def download(ecr: Any, repo: str, digest: str) -> bytes:
    url = ecr.get_download_url_for_layer(repositoryName=repo, layerDigest=digest)["downloadUrl"]
    response = httpx.get(url)
    assert response.status_code == 200
    return response.content


def blobs_of(manifest: bytes) -> list[str]:
    doc = json.loads(manifest)
    return [doc["config"]["digest"], *(layer["digest"] for layer in doc["layers"])]


def test_everything_survives_a_restart(make_server: ServerFactory) -> None:
    server = make_server()
    ecr = server.client()
    ecr.create_repository(
        repositoryName="persist/app",
        imageTagMutability="IMMUTABLE_WITH_EXCLUSION",
        imageTagMutabilityExclusionFilters=[LATEST],
        imageScanningConfiguration={"scanOnPush": True},
        encryptionConfiguration={"encryptionType": "KMS", "kmsKey": "arn:aws:kms:key/1"},
        tags=[{"Key": "team", "Value": "web"}],
    )
    ecr.create_repository(repositoryName="persist/other")
    ecr.tag_resource(resourceArn=ARN + "persist/other", tags=[{"Key": "k", "Value": "v"}])

    first = make_image(ecr, "persist/app", seed="first", layers=2)
    ecr.put_image(repositoryName="persist/app", imageManifest=first.decode(), imageTag="v1")
    ecr.put_image(repositoryName="persist/app", imageManifest=first.decode(), imageTag="latest")
    untagged = make_image(ecr, "persist/app", seed="untagged")
    ecr.put_image(repositoryName="persist/app", imageManifest=untagged.decode())
    oci = make_image(ecr, "persist/other", seed="oci", media_type=OCI)
    ecr.put_image(
        repositoryName="persist/other",
        imageManifest=oci.decode(),
        imageManifestMediaType=OCI,
        imageTag="v2",
    )
    lone = os.urandom(2 * 1024 * 1024 + 3)
    lone_digest = upload_blob(ecr, "persist/other", lone)
    # an upload left half-way
    open_upload = ecr.initiate_layer_upload(repositoryName="persist/app")["uploadId"]
    half = os.urandom(1000)
    ecr.upload_layer_part(
        repositoryName="persist/app",
        uploadId=open_upload,
        partFirstByte=0,
        partLastByte=499,
        layerPartBlob=half[:500],
    )
    old_url = ecr.get_download_url_for_layer(
        repositoryName="persist/other", layerDigest=lone_digest
    )["downloadUrl"]

    before = snapshot(ecr)
    stored = {name: manifests(ecr, name) for name in ("persist/app", "persist/other")}
    layers = {
        (name, digest): download(ecr, name, digest)
        for name, images in stored.items()
        for manifest in images.values()
        for digest in blobs_of(manifest)
    }

    server.restart()
    ecr = server.client()

    assert snapshot(ecr) == before
    assert {name: manifests(ecr, name) for name in stored} == stored
    assert stored["persist/app"][hashlib_digest(first)] == first
    assert stored["persist/other"][hashlib_digest(oci)] == oci
    for (name, digest), data in layers.items():
        assert download(ecr, name, digest) == data
    assert download(ecr, "persist/other", lone_digest) == lone
    assert httpx.get(old_url).content == lone  # the signing secret is kept in the data dir

    # tag mutability is still enforced, exclusions included
    again = make_image(ecr, "persist/app", seed="second")
    with pytest.raises(ClientError) as caught:
        ecr.put_image(repositoryName="persist/app", imageManifest=again.decode(), imageTag="v1")
    assert caught.value.response["Error"]["Code"] == "ImageTagAlreadyExistsException"
    ecr.put_image(repositoryName="persist/app", imageManifest=again.decode(), imageTag="latest")

    # the half-done upload continues where it stopped
    answer = ecr.upload_layer_part(
        repositoryName="persist/app",
        uploadId=open_upload,
        partFirstByte=500,
        partLastByte=999,
        layerPartBlob=half[500:],
    )
    assert answer["lastByteReceived"] == 999
    done = ecr.complete_layer_upload(
        repositoryName="persist/app", uploadId=open_upload, layerDigests=[hashlib_digest(half)]
    )
    assert download(ecr, "persist/app", done["layerDigest"]) == half


def hashlib_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def kill_hard(server: ProcessServer) -> None:
    """SIGKILL: no shutdown hooks, no flushing; then wait for the process to be gone."""
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGKILL)
    assert server.process.wait(timeout=30) == -signal.SIGKILL
    server.process = None


@pytest.mark.slow  # SIGKILL needs a process
def test_acknowledged_pushes_survive_sigkill(make_server: ServerFactory) -> None:
    server = make_server(process=True)
    setup = server.client()
    setup.create_repository(repositoryName="crash/app")
    acknowledged: dict[str, bytes] = {}
    started = threading.Event()
    stop = threading.Event()
    failures: list[BaseException] = []

    def pusher() -> None:
        ecr = server.client(config=Config(retries={"total_max_attempts": 1}))
        i = 0
        while not stop.is_set():
            try:
                manifest = make_image(ecr, "crash/app", seed=f"push-{i}", layers=2)
                put = ecr.put_image(
                    repositoryName="crash/app", imageManifest=manifest.decode(), imageTag=f"t{i}"
                )
            except (BotoCoreError, ClientError, httpx.HTTPError) as error:
                failures.append(error)
                return
            acknowledged[put["image"]["imageId"]["imageDigest"]] = manifest
            if len(acknowledged) >= 3:
                started.set()
            i += 1

    thread = threading.Thread(target=pusher)
    thread.start()
    try:
        assert started.wait(timeout=120), failures
        kill_hard(server)  # mid-way through the next push
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not thread.is_alive()

    server.start()
    ecr = server.client()
    stored = manifests(ecr, "crash/app")
    # every acknowledged push is there, byte-exact, under its tag
    for digest, manifest in acknowledged.items():
        assert stored[digest] == manifest
    tags = {
        i["imageTag"]: i["imageDigest"]
        for i in ecr.list_images(repositoryName="crash/app", filter={"tagStatus": "TAGGED"})[
            "imageIds"
        ]
    }
    assert set(acknowledged) <= set(tags.values())
    # whatever is stored (an unacknowledged push may have landed too) is whole
    for manifest in stored.values():
        for digest in blobs_of(manifest):
            data = download(ecr, "crash/app", digest)
            assert hashlib_digest(data) == digest
    # and the server takes new pushes
    fresh = make_image(ecr, "crash/app", seed="after-crash")
    ecr.put_image(repositoryName="crash/app", imageManifest=fresh.decode(), imageTag="after")
    assert manifests(ecr, "crash/app")[hashlib_digest(fresh)] == fresh


@pytest.mark.slow  # SIGKILL needs a process
def test_a_layer_upload_interrupted_by_sigkill_can_be_finished(
    make_server: ServerFactory,
) -> None:
    server = make_server(process=True)
    ecr = server.client()
    ecr.create_repository(repositoryName="crash/layers")
    data = os.urandom(3 * 1024 * 1024)
    kept = upload_blob(ecr, "crash/layers", b"committed before the crash")
    upload_id = ecr.initiate_layer_upload(repositoryName="crash/layers")["uploadId"]
    ecr.upload_layer_part(
        repositoryName="crash/layers",
        uploadId=upload_id,
        partFirstByte=0,
        partLastByte=len(data) // 2 - 1,
        layerPartBlob=data[: len(data) // 2],
    )
    kill_hard(server)
    server.start()
    ecr = server.client()
    assert download(ecr, "crash/layers", kept) == b"committed before the crash"
    ecr.upload_layer_part(
        repositoryName="crash/layers",
        uploadId=upload_id,
        partFirstByte=len(data) // 2,
        partLastByte=len(data) - 1,
        layerPartBlob=data[len(data) // 2 :],
    )
    done = ecr.complete_layer_upload(
        repositoryName="crash/layers", uploadId=upload_id, layerDigests=[hashlib_digest(data)]
    )
    assert download(ecr, "crash/layers", done["layerDigest"]) == data
