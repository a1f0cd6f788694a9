"""Behaviours an external ECR test suite found openecr answering differently from ECR: PutImage
without any media type, DescribeImages of lists and indexes, and KMS without a key."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from conftest import ACCOUNT, Server, ServerFactory, make_image
from openecr.domain.kms import aws_managed_key_arn

OCI = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
NOT_PROVIDED = "image manifest mediatype not provided in manifest or parameter"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def without_media_type(raw: bytes) -> bytes:
    doc = json.loads(raw)
    del doc["mediaType"]
    return json.dumps(doc).encode()


def test_put_image_needs_a_media_type_somewhere(ecr: Any, repo: str) -> None:
    raw = without_media_type(make_image(ecr, repo, media_type=OCI))
    with pytest.raises(ClientError) as caught:
        ecr.put_image(repositoryName=repo, imageManifest=raw.decode(), imageTag="v1")
    error = caught.value.response["Error"]
    assert (error["Code"], error["Message"]) == ("InvalidParameterException", NOT_PROVIDED)
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert ecr.list_images(repositoryName=repo)["imageIds"] == []
    image = ecr.put_image(
        repositoryName=repo, imageManifest=raw.decode(), imageTag="v1", imageManifestMediaType=OCI
    )["image"]
    assert image["imageManifestMediaType"] == OCI


def test_v2_push_without_media_type_is_still_sniffed(server: Server, ecr: Any, repo: str) -> None:
    raw = without_media_type(make_image(ecr, repo, media_type=OCI))
    with httpx.Client(base_url=server.endpoint, timeout=30) as v2:
        assert v2.put(f"/v2/{repo}/manifests/v1", content=raw).status_code == 201
    [detail] = ecr.describe_images(repositoryName=repo)["imageDetails"]
    assert (detail["imageDigest"], detail["imageManifestMediaType"]) == (sha256(raw), OCI)


def test_describe_images_gives_an_index_no_size(ecr: Any, repo: str) -> None:
    child = make_image(ecr, repo, media_type=OCI)
    ecr.put_image(repositoryName=repo, imageManifest=child.decode())
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [{"mediaType": OCI, "digest": sha256(child), "size": len(child)}],
        }
    )
    ecr.put_image(repositoryName=repo, imageManifest=index, imageTag="multi")
    details = {
        d["imageDigest"]: d for d in ecr.describe_images(repositoryName=repo)["imageDetails"]
    }
    assert "imageSizeInBytes" not in details[sha256(index.encode())]
    assert details[sha256(child)]["imageSizeInBytes"] > 0
    [by_tag] = ecr.describe_images(repositoryName=repo, imageIds=[{"imageTag": "multi"}])[
        "imageDetails"
    ]
    assert "imageSizeInBytes" not in by_tag


KEY_ARN = re.compile(
    r"arn:aws:kms:us-east-1:(\d{12}):key/[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}"
)


def test_kms_without_a_key_gets_the_registry_managed_key(make_server: ServerFactory) -> None:
    server = make_server()
    ecr = server.client()
    kms = {"encryptionType": "KMS"}
    first = ecr.create_repository(repositoryName="kms/one", encryptionConfiguration=kms)
    key = first["repository"]["encryptionConfiguration"]["kmsKey"]
    match = KEY_ARN.fullmatch(key)
    assert match is not None and match.group(1) == ACCOUNT
    assert first["repository"]["encryptionConfiguration"]["encryptionType"] == "KMS"
    second = ecr.create_repository(repositoryName="kms/two", encryptionConfiguration=kms)
    assert second["repository"]["encryptionConfiguration"]["kmsKey"] == key
    other = ecr.create_repository(
        repositoryName="kms/one", encryptionConfiguration=kms, registryId="210987654321"
    )
    other_key = other["repository"]["encryptionConfiguration"]["kmsKey"]
    assert other_key != key and other_key.startswith("arn:aws:kms:us-east-1:210987654321:key/")
    server.restart()
    described = server.client().describe_repositories(repositoryNames=["kms/one", "kms/two"])
    assert [r["encryptionConfiguration"] for r in described["repositories"]] == [
        {"encryptionType": "KMS", "kmsKey": key}
    ] * 2
    assert key == aws_managed_key_arn(ACCOUNT, "us-east-1")
    assert aws_managed_key_arn(ACCOUNT, "eu-west-1") != key


def test_aes256_repositories_have_no_key(ecr: Any, repo_name: str) -> None:
    created = ecr.create_repository(
        repositoryName=repo_name, encryptionConfiguration={"encryptionType": "AES256"}
    )
    assert created["repository"]["encryptionConfiguration"] == {"encryptionType": "AES256"}


def test_kms_dsse_without_a_key_is_kept_as_given(ecr: Any, repo_name: str) -> None:
    dsse = {"encryptionType": "KMS_DSSE"}
    created = ecr.create_repository(repositoryName=repo_name, encryptionConfiguration=dsse)
    assert created["repository"]["encryptionConfiguration"] == dsse
