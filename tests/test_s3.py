"""The registry on an S3 blob store (the session's SeaweedFS): uploads of every kind become
multipart objects only when their digest matches, /v2 blob GETs redirect to presigned URLs or
are proxied with ranges, GetDownloadUrlForLayer presigns, sessions move between servers, and a
store that cannot be reached answers the protocol's errors."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import ServerFactory, free_port, make_image, upload_blob

pytestmark = pytest.mark.slow  # SeaweedFS and PostgreSQL are processes

MIB = 1024 * 1024


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def s3_keys(seaweedfs: Any, store: str) -> list[str]:
    bucket, _, prefix = store.removeprefix("s3://").partition("/")
    pages = (
        seaweedfs.client()
        .get_paginator("list_objects_v2")
        .paginate(Bucket=bucket, Prefix=prefix + "/")
    )
    return [item["Key"][len(prefix) + 1 :] for page in pages for item in page.get("Contents", [])]


def test_ecr_layers_in_parts_become_blobs_and_presigned_downloads(
    make_server: ServerFactory, s3_blob_store: str, seaweedfs: Any
) -> None:
    server = make_server("--blob-store", s3_blob_store, "--s3-path-style")
    ecr = server.client()
    ecr.create_repository(repositoryName="team/app")
    layer = os.urandom(12 * MIB + 5)
    upload = ecr.initiate_layer_upload(repositoryName="team/app")["uploadId"]
    step = 3 * MIB  # parts below S3's 5 MiB minimum: buffered into whole parts
    for first in range(0, len(layer), step):
        part = layer[first : first + step]
        ecr.upload_layer_part(
            repositoryName="team/app",
            uploadId=upload,
            partFirstByte=first,
            partLastByte=first + len(part) - 1,
            layerPartBlob=part,
        )
    with pytest.raises(ClientError) as caught:  # a wrong digest stores nothing
        ecr.complete_layer_upload(
            repositoryName="team/app", uploadId=upload, layerDigests=[sha256(b"other")]
        )
    assert caught.value.response["Error"]["Code"] == "InvalidLayerException"
    assert not [k for k in s3_keys(seaweedfs, s3_blob_store) if k.startswith("blobs/")]
    done = ecr.complete_layer_upload(
        repositoryName="team/app", uploadId=upload, layerDigests=[sha256(layer)]
    )
    assert done["layerDigest"] == sha256(layer)
    keys = [k for k in s3_keys(seaweedfs, s3_blob_store) if not k.startswith("touched/")]
    assert keys == [f"blobs/sha256/{sha256(layer)[7:9]}/{sha256(layer)[7:]}"]  # session gone
    url = ecr.get_download_url_for_layer(repositoryName="team/app", layerDigest=sha256(layer))[
        "downloadUrl"
    ]
    assert url.startswith(seaweedfs.endpoint)  # the store's presigned URL, as ECR's is S3's
    assert httpx.get(url).content == layer
    manifest = make_image(ecr, "team/app", seed="s3", layers=2)
    ecr.put_image(repositoryName="team/app", imageManifest=manifest.decode(), imageTag="v1")
    got = ecr.batch_get_image(repositoryName="team/app", imageIds=[{"imageTag": "v1"}])
    assert got["images"][0]["imageManifest"].encode() == manifest


@pytest.mark.parametrize("redirect", [True, False], ids=["redirect", "proxy"])
def test_v2_uploads_and_blob_gets(
    make_server: ServerFactory, s3_blob_store: str, redirect: bool
) -> None:
    args = ["--blob-store", s3_blob_store, "--s3-path-style"]
    if not redirect:
        args.append("--no-blob-redirect")
    server = make_server(*args)
    server.client().create_repository(repositoryName="team/app")
    data = os.urandom(6 * MIB + 1)
    with httpx.Client(base_url=server.endpoint) as v2:
        # chunked: POST, PATCHes, PUT
        location = v2.post("/v2/team/app/blobs/uploads/").headers["Location"]
        for start in range(0, len(data), 2 * MIB):
            chunk = data[start : start + 2 * MIB]
            response = v2.patch(
                location,
                content=chunk,
                headers={"Content-Range": f"{start}-{start + len(chunk) - 1}"},
            )
            assert response.status_code == 202
            location = response.headers["Location"]
        assert v2.put(location, params={"digest": sha256(data)}).status_code == 201
        # monolithic: POST then PUT with the body
        small = b"a small blob"
        location = v2.post("/v2/team/app/blobs/uploads/").headers["Location"]
        assert v2.put(location, params={"digest": sha256(small)}, content=small).status_code == 201
        # a mismatch: DIGEST_INVALID, nothing stored
        location = v2.post("/v2/team/app/blobs/uploads/").headers["Location"]
        bad = v2.put(location, params={"digest": sha256(b"not it")}, content=b"it")
        assert bad.status_code == 400 and bad.json()["errors"][0]["code"] == "DIGEST_INVALID"
        assert v2.head(f"/v2/team/app/blobs/{sha256(b'not it')}").status_code == 404

        response = v2.get(f"/v2/team/app/blobs/{sha256(data)}")
        if redirect:
            assert response.status_code == 307
            assert response.headers["Docker-Content-Digest"] == sha256(data)
            target = response.headers["Location"]
            assert httpx.get(target).content == data
            ranged = httpx.get(target, headers={"Range": "bytes=10-19"})
            assert (ranged.status_code, ranged.content) == (206, data[10:20])
        else:
            assert (response.status_code, response.content) == (200, data)
            ranged = v2.get(f"/v2/team/app/blobs/{sha256(data)}", headers={"Range": "bytes=-7"})
            assert ranged.status_code == 206
            assert ranged.content == data[-7:]
            assert (
                ranged.headers["Content-Range"]
                == f"bytes {len(data) - 7}-{len(data) - 1}/{len(data)}"
            )
        head = v2.head(f"/v2/team/app/blobs/{sha256(data)}")
        assert (head.status_code, head.headers["Content-Length"]) == (200, str(len(data)))


def test_an_upload_session_continues_on_another_server(
    make_server: ServerFactory, s3_blob_store: str, postgres_url: str, tmp_path: Any
) -> None:
    """Two servers sharing PostgreSQL and the bucket (and nothing on disk): a /v2 upload
    started on one takes chunks through both and is finished on the other."""
    args = ["--blob-store", s3_blob_store, "--s3-path-style", "--database-url", postgres_url]
    one = make_server(*args, data_dir=tmp_path / "one")
    two = make_server(*args, data_dir=tmp_path / "two")
    one.client().create_repository(repositoryName="team/app")
    data = os.urandom(7 * MIB + 3)
    pieces = [data[i : i + 3 * MIB] for i in range(0, len(data), 3 * MIB)]
    servers = [one, two, one]
    path = httpx.post(f"{one.endpoint}/v2/team/app/blobs/uploads/").headers["Location"]
    path = path.removeprefix(one.endpoint)
    start = 0
    for server, piece in zip(servers, pieces, strict=True):
        response = httpx.patch(
            server.endpoint + path,
            content=piece,
            headers={"Content-Range": f"{start}-{start + len(piece) - 1}"},
        )
        assert response.status_code == 202, response.text
        start += len(piece)
        path = response.headers["Location"].removeprefix(server.endpoint)
    done = httpx.put(two.endpoint + path, params={"digest": sha256(data)})
    assert done.status_code == 201, done.text
    got = httpx.get(f"{one.endpoint}/v2/team/app/blobs/{sha256(data)}", follow_redirects=True)
    assert got.content == data


def test_a_store_that_cannot_be_reached_answers_clear_errors(
    make_server: ServerFactory, s3_env: dict[str, str], s3_bucket: str
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    for store, endpoint, cause in [
        (f"s3://{s3_bucket}/x", closed, ("Could not connect",)),
        # (SeaweedFS answers AccessDenied for a bucket that does not exist)
        (
            "s3://no-such-bucket-here/x",
            s3_env["AWS_ENDPOINT_URL_S3"],
            ("NoSuchBucket", "AccessDenied"),
        ),
    ]:
        server = make_server(
            "--blob-store", store, "--s3-endpoint-url", endpoint, "--s3-path-style"
        )
        ecr = server.client(config=Config(retries={"max_attempts": 1}))
        ecr.create_repository(repositoryName="team/app")
        with pytest.raises(ClientError) as caught:
            upload_blob(ecr, "team/app", b"bytes")
        error = caught.value.response["Error"]
        assert error["Code"] == "ServerException"
        assert error["Message"].startswith("The blob store is unavailable: ")
        assert any(c in error["Message"] for c in cause), error["Message"]
        response = httpx.post(f"{server.endpoint}/v2/team/app/blobs/uploads/", timeout=120)
        assert response.status_code == 503
        assert "The blob store is unavailable" in response.json()["errors"][0]["message"]
        server.stop()
