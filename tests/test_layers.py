"""The layer API through boto3, the aws CLI and plain HTTP: availability checks, chunked uploads,
their failure modes, and signed download URLs."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import os
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import ACCOUNT, Server, ServerFactory, aws_json, upload_blob

UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
UPLOAD_NOT_FOUND = (
    "The upload could not be found, or the specified upload ID is not valid for this repository."
)


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def error(call: Any, **kwargs: Any) -> tuple[str, str]:
    """Run a call that must fail with HTTP 400; return its error code and message."""
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    response = caught.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    return response["Error"]["Code"], response["Error"]["Message"]


def part(
    ecr: Any, repo: str, upload_id: str, first: int, data: bytes, last: int | None = None
) -> Any:
    return ecr.upload_layer_part(
        repositoryName=repo,
        uploadId=upload_id,
        partFirstByte=first,
        partLastByte=first + len(data) - 1 if last is None else last,
        layerPartBlob=data,
    )


def complete(ecr: Any, repo: str, upload_id: str, digest: str) -> Any:
    return ecr.complete_layer_upload(repositoryName=repo, uploadId=upload_id, layerDigests=[digest])


def blob_file(server: Server, digest: str) -> Path:
    algorithm, _, hexpart = digest.partition(":")
    return server.data_dir / "blobs" / algorithm / hexpart[:2] / hexpart


def available(ecr: Any, repo: str, digest: str) -> bool:
    checked = ecr.batch_check_layer_availability(repositoryName=repo, layerDigests=[digest])
    return bool(checked["layers"])


# --- uploads -------------------------------------------------------------------------------------


def test_chunked_upload_round_trip(ecr: Any, repo: str) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    digest = sha(data)
    started = ecr.initiate_layer_upload(repositoryName=repo)
    upload_id = started["uploadId"]
    assert UUID_RE.fullmatch(upload_id)
    assert started["partSize"] > 0
    offsets = [0, 1024 * 1024, 2 * 1024 * 1024, len(data)]
    for first, end in itertools.pairwise(offsets):
        answer = part(ecr, repo, upload_id, first, data[first:end])
        assert answer["lastByteReceived"] == end - 1
        assert answer["uploadId"] == upload_id
        assert answer["repositoryName"] == repo
        assert answer["registryId"] == ACCOUNT
    done = complete(ecr, repo, upload_id, digest)
    assert done["layerDigest"] == digest
    assert done["uploadId"] == upload_id
    assert (done["repositoryName"], done["registryId"]) == (repo, ACCOUNT)
    checked = ecr.batch_check_layer_availability(repositoryName=repo, layerDigests=[digest])
    assert checked["layers"] == [
        {"layerDigest": digest, "layerAvailability": "AVAILABLE", "layerSize": len(data)}
    ]
    assert checked["failures"] == []
    url = ecr.get_download_url_for_layer(repositoryName=repo, layerDigest=digest)
    assert url["layerDigest"] == digest
    assert httpx.get(url["downloadUrl"]).content == data


def test_batch_check_reports_each_digest(ecr: Any, repo: str) -> None:
    present = upload_blob(ecr, repo, b"present")
    absent = sha(b"absent")
    checked = ecr.batch_check_layer_availability(
        repositoryName=repo, layerDigests=[absent, present, "not-a-digest", ""]
    )
    assert checked["layers"] == [
        {"layerDigest": present, "layerAvailability": "AVAILABLE", "layerSize": 7}
    ]
    assert checked["failures"] == [
        {
            "layerDigest": absent,
            "failureCode": "MissingLayerDigest",
            "failureReason": "Could not find layer",
        },
        {
            "layerDigest": "not-a-digest",
            "failureCode": "InvalidLayerDigest",
            "failureReason": "Invalid layer digest",
        },
        {
            "layerDigest": "",
            "failureCode": "MissingLayerDigest",
            "failureReason": "Missing layer digest",
        },
    ]


def test_layers_belong_to_their_repository(ecr: Any, repo: str) -> None:
    other = repo + "-other"
    ecr.create_repository(repositoryName=other)
    data = b"shared layer " + uuid.uuid4().bytes
    digest = upload_blob(ecr, repo, data)
    assert not available(ecr, other, digest)
    assert error(ecr.get_download_url_for_layer, repositoryName=other, layerDigest=digest)[0] == (
        "LayersNotFoundException"
    )
    # the same bytes uploaded to the other repository are linked there too, not refused
    assert upload_blob(ecr, other, data) == digest
    assert available(ecr, other, digest)
    url = ecr.get_download_url_for_layer(repositoryName=other, layerDigest=digest)["downloadUrl"]
    assert httpx.get(url).content == data


@pytest.mark.parametrize(
    ("first", "length", "last"),
    [
        (11, 5, None),  # a gap after the 10 bytes received
        (9, 5, None),  # overlaps the last byte received
        (0, 5, None),  # starts over
        (10, 5, 15),  # declares one byte more than it carries
        (10, 5, 13),  # declares one byte less than it carries
        (10, 5, 9),  # last before first
    ],
)
def test_parts_must_be_contiguous(
    ecr: Any, repo: str, first: int, length: int, last: int | None
) -> None:
    data = os.urandom(20)
    upload_id = ecr.initiate_layer_upload(repositoryName=repo)["uploadId"]
    part(ecr, repo, upload_id, 0, data[:10])
    code, message = error(
        ecr.upload_layer_part,
        repositoryName=repo,
        uploadId=upload_id,
        partFirstByte=first,
        partLastByte=first + length - 1 if last is None else last,
        layerPartBlob=data[first : first + length],
    )
    assert code == "InvalidLayerPartException"
    assert message.endswith("Last valid byte received: 9")
    # the refused part changed nothing: the upload continues where it was
    assert part(ecr, repo, upload_id, 10, data[10:])["lastByteReceived"] == 19
    assert complete(ecr, repo, upload_id, sha(data))["layerDigest"] == sha(data)


def test_an_empty_part_is_refused(ecr: Any, repo: str) -> None:
    upload_id = ecr.initiate_layer_upload(repositoryName=repo)["uploadId"]
    code, message = error(
        ecr.upload_layer_part,
        repositoryName=repo,
        uploadId=upload_id,
        partFirstByte=0,
        partLastByte=0,
        layerPartBlob=b"",
    )
    assert code == "InvalidLayerPartException"
    assert message.endswith("Last valid byte received: -1")


def test_concurrent_parts_at_one_offset_only_one_wins(ecr: Any, server: Server, repo: str) -> None:
    upload_id = ecr.initiate_layer_upload(repositoryName=repo)["uploadId"]
    candidates = [bytes([i]) * 256 * 1024 for i in range(8)]

    def send(data: bytes) -> bool:
        client = server.client()
        try:
            part(client, repo, upload_id, 0, data)
        except ClientError as failure:
            assert failure.response["Error"]["Code"] == "InvalidLayerPartException"
            return False
        return True

    with ThreadPoolExecutor(len(candidates)) as pool:
        outcomes = list(pool.map(send, candidates))
    assert outcomes.count(True) == 1
    winner = candidates[outcomes.index(True)]
    assert complete(ecr, repo, upload_id, sha(winner))["layerDigest"] == sha(winner)
    url = ecr.get_download_url_for_layer(repositoryName=repo, layerDigest=sha(winner))
    assert httpx.get(url["downloadUrl"]).content == winner


def test_unknown_and_foreign_upload_ids(ecr: Any, repo: str) -> None:
    other = repo + "-other"
    ecr.create_repository(repositoryName=other)
    foreign = ecr.initiate_layer_upload(repositoryName=other)["uploadId"]
    for upload_id in (str(uuid.uuid4()), foreign, foreign.upper()):
        code, message = error(
            ecr.upload_layer_part,
            repositoryName=repo,
            uploadId=upload_id,
            partFirstByte=0,
            partLastByte=0,
            layerPartBlob=b"x",
        )
        assert (code, message) == ("UploadNotFoundException", UPLOAD_NOT_FOUND)
        code, message = error(
            ecr.complete_layer_upload,
            repositoryName=repo,
            uploadId=upload_id,
            layerDigests=[sha(b"x")],
        )
        assert (code, message) == ("UploadNotFoundException", UPLOAD_NOT_FOUND)
    # the foreign session was not disturbed
    assert part(ecr, other, foreign, 0, b"x")["lastByteReceived"] == 0
    assert complete(ecr, other, foreign, sha(b"x"))["layerDigest"] == sha(b"x")


@pytest.mark.parametrize("upload_id", ["not-a-uuid", "../../etc/passwd", "", "\u0000"])
def test_malformed_upload_ids_are_invalid_parameters(
    server: Server, repo: str, upload_id: str
) -> None:
    client = server.client(config=Config(parameter_validation=False))
    code, message = error(
        client.upload_layer_part,
        repositoryName=repo,
        uploadId=upload_id,
        partFirstByte=0,
        partLastByte=0,
        layerPartBlob=b"x",
    )
    assert code == "InvalidParameterException"
    assert "uploadId" in message


def test_a_completed_upload_is_closed(ecr: Any, repo: str) -> None:
    upload_id = ecr.initiate_layer_upload(repositoryName=repo)["uploadId"]
    part(ecr, repo, upload_id, 0, b"abc")
    complete(ecr, repo, upload_id, sha(b"abc"))
    assert error(ecr.upload_layer_part, **_part_args(repo, upload_id, 3, b"d"))[0] == (
        "UploadNotFoundException"
    )
    assert error(ecr.complete_layer_upload, **_complete_args(repo, upload_id, b"abc"))[0] == (
        "UploadNotFoundException"
    )


def _part_args(repo: str, upload_id: str, first: int, data: bytes) -> dict[str, Any]:
    return {
        "repositoryName": repo,
        "uploadId": upload_id,
        "partFirstByte": first,
        "partLastByte": first + len(data) - 1,
        "layerPartBlob": data,
    }


def _complete_args(repo: str, upload_id: str, data: bytes) -> dict[str, Any]:
    return {"repositoryName": repo, "uploadId": upload_id, "layerDigests": [sha(data)]}


def test_digest_mismatch_stores_nothing(ecr: Any, server: Server, repo: str) -> None:
    data = b"the real bytes " + uuid.uuid4().bytes
    claimed = sha(b"something else")
    upload_id = ecr.initiate_layer_upload(repositoryName=repo)["uploadId"]
    part(ecr, repo, upload_id, 0, data)
    code, message = error(
        ecr.complete_layer_upload, **_complete_args(repo, upload_id, b"something else")
    )
    assert code == "InvalidLayerException"
    assert claimed in message
    for digest in (claimed, sha(data)):
        assert not available(ecr, repo, digest)
        assert not blob_file(server, digest).exists()
    # the session survives the refusal: the client may retry with the right digest
    assert complete(ecr, repo, upload_id, sha(data))["layerDigest"] == sha(data)
    assert available(ecr, repo, sha(data))
    assert blob_file(server, sha(data)).read_bytes() == data


def test_malformed_or_unsupported_digest_is_an_invalid_layer(ecr: Any, repo: str) -> None:
    upload_id = ecr.initiate_layer_upload(repositoryName=repo)["uploadId"]
    part(ecr, repo, upload_id, 0, b"abc")
    for digest in ("sha256:abc", "md5:" + hashlib.md5(b"abc").hexdigest()):
        code, _ = error(
            ecr.complete_layer_upload,
            repositoryName=repo,
            uploadId=upload_id,
            layerDigests=[digest],
        )
        assert code == "InvalidLayerException"
    assert complete(ecr, repo, upload_id, sha(b"abc"))["layerDigest"] == sha(b"abc")


def test_one_upload_completes_as_one_layer(ecr: Any, repo: str) -> None:
    upload_id = ecr.initiate_layer_upload(repositoryName=repo)["uploadId"]
    part(ecr, repo, upload_id, 0, b"abc")
    code, message = error(
        ecr.complete_layer_upload,
        repositoryName=repo,
        uploadId=upload_id,
        layerDigests=[sha(b"abc"), sha(b"abc")],
    )
    assert code == "InvalidParameterException"
    assert "layerDigests" in message
    assert complete(ecr, repo, upload_id, sha(b"abc"))["layerDigest"] == sha(b"abc")


def test_sha512_layers_are_verified(ecr: Any, repo: str) -> None:
    data = b"sha512 content"
    digest = "sha512:" + hashlib.sha512(data).hexdigest()
    upload_id = ecr.initiate_layer_upload(repositoryName=repo)["uploadId"]
    part(ecr, repo, upload_id, 0, data)
    assert complete(ecr, repo, upload_id, digest)["layerDigest"] == digest
    url = ecr.get_download_url_for_layer(repositoryName=repo, layerDigest=digest)["downloadUrl"]
    assert httpx.get(url).content == data


def test_empty_upload_is_refused(ecr: Any, repo: str) -> None:
    upload_id = ecr.initiate_layer_upload(repositoryName=repo)["uploadId"]
    code, message = error(ecr.complete_layer_upload, **_complete_args(repo, upload_id, b""))
    assert code == "EmptyUploadException"
    assert message == "The specified layer upload does not contain any layer parts."


def test_existing_layer_is_refused_and_kept(ecr: Any, repo: str) -> None:
    data = b"layer " + uuid.uuid4().bytes
    digest = upload_blob(ecr, repo, data)
    upload_id = ecr.initiate_layer_upload(repositoryName=repo)["uploadId"]
    part(ecr, repo, upload_id, 0, data)
    code, message = error(ecr.complete_layer_upload, **_complete_args(repo, upload_id, data))
    assert code == "LayerAlreadyExistsException"
    assert message == (
        f"The layer '{digest}' already exists in the repository with name '{repo}' in the "
        f"registry with id '{ACCOUNT}'"
    )
    url = ecr.get_download_url_for_layer(repositoryName=repo, layerDigest=digest)["downloadUrl"]
    assert httpx.get(url).content == data


@pytest.mark.parametrize(
    "operation", ["initiate", "part", "complete", "check", "download"], ids=str
)
def test_layer_calls_on_a_missing_repository(ecr: Any, repo_name: str, operation: str) -> None:
    calls = {
        "initiate": (ecr.initiate_layer_upload, {}),
        "part": (ecr.upload_layer_part, _part_args(repo_name, str(uuid.uuid4()), 0, b"x")),
        "complete": (ecr.complete_layer_upload, _complete_args(repo_name, str(uuid.uuid4()), b"x")),
        "check": (ecr.batch_check_layer_availability, {"layerDigests": [sha(b"x")]}),
        "download": (ecr.get_download_url_for_layer, {"layerDigest": sha(b"x")}),
    }
    call, params = calls[operation]
    params = {"repositoryName": repo_name, **params}
    code, message = error(call, **params)
    assert code == "RepositoryNotFoundException"
    assert message == (
        f"The repository with name '{repo_name}' does not exist in the registry with id '{ACCOUNT}'"
    )


# --- download URLs -------------------------------------------------------------------------------


def test_unknown_layer_has_no_url(ecr: Any, repo: str) -> None:
    digest = sha(b"never uploaded")
    code, message = error(ecr.get_download_url_for_layer, repositoryName=repo, layerDigest=digest)
    assert code == "LayersNotFoundException"
    assert message == (
        f"The layer with digest '{digest}' does not exist in the repository with name '{repo}' "
        f"in the registry with id '{ACCOUNT}'"
    )


@pytest.mark.parametrize("digest", ["sha256:abc", "sha256:" + "A" * 64, "nope"])
def test_malformed_layer_digest_is_an_invalid_parameter(
    server: Server, repo: str, digest: str
) -> None:
    client = server.client(config=Config(parameter_validation=False))
    code, message = error(
        client.get_download_url_for_layer, repositoryName=repo, layerDigest=digest
    )
    assert code == "InvalidParameterException"
    assert "layerDigest" in message


def _tampered(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    query = {k: v for k, v in query.items() if v != "DROP"}
    return parts._replace(query=urlencode(query)).geturl()


def test_download_url_refuses_tampering(ecr: Any, repo: str) -> None:
    data = b"guarded " + uuid.uuid4().bytes
    digest = upload_blob(ecr, repo, data)
    other = upload_blob(ecr, repo, b"other " + uuid.uuid4().bytes)
    url = ecr.get_download_url_for_layer(repositoryName=repo, layerDigest=digest)["downloadUrl"]
    served = httpx.get(url)
    assert served.status_code == 200
    assert served.content == data
    assert served.headers["content-type"] == "application/octet-stream"
    signature = parse_qs(urlsplit(url).query)["signature"][0]
    expires = int(parse_qs(urlsplit(url).query)["expires"][0])
    forged = [
        _tampered(url, signature=signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")),
        _tampered(url, signature=""),
        _tampered(url, signature="DROP"),
        _tampered(url, expires=str(expires + 3600)),
        _tampered(url, expires="DROP"),
        _tampered(url, expires="soon"),
        url.replace(quote(digest), quote(other)),
        url.replace(f"/{repo}/", f"/{repo}-other/"),
        url.replace(f"/{ACCOUNT}/", "/210987654321/"),
    ]
    for bad in forged:
        refused = httpx.get(bad)
        assert refused.status_code == 403, bad
        assert refused.json()["__type"] == "AccessDeniedException"
        assert data not in refused.content


def _sign(server: Server, path: str, expires: int) -> str:
    secret = (server.data_dir / "secret.key").read_bytes()
    mac = hmac.new(secret, f"{path}\n{expires}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def test_download_url_expires(make_server: ServerFactory) -> None:
    server = make_server()
    ecr = server.client()
    ecr.create_repository(repositoryName="expiry/repo")
    digest = upload_blob(ecr, "expiry/repo", b"expiring bytes")
    url = ecr.get_download_url_for_layer(repositoryName="expiry/repo", layerDigest=digest)
    path = unquote(urlsplit(url["downloadUrl"]).path)
    assert int(parse_qs(urlsplit(url["downloadUrl"]).query)["expires"][0]) > time.time()
    past = int(time.time()) - 1
    expired = f"{server.endpoint}{quote(path)}?expires={past}&signature={_sign(server, path, past)}"
    refused = httpx.get(expired)
    assert refused.status_code == 403
    assert refused.json()["__type"] == "AccessDeniedException"
    # the same construction with a future deadline is honoured: only the expiry refused it
    future = int(time.time()) + 600
    fresh = (
        f"{server.endpoint}{quote(path)}?expires={future}&signature={_sign(server, path, future)}"
    )
    assert httpx.get(fresh).content == b"expiring bytes"


def test_download_url_dies_with_the_repository(ecr: Any, repo: str) -> None:
    digest = upload_blob(ecr, repo, b"short-lived " + uuid.uuid4().bytes)
    url = ecr.get_download_url_for_layer(repositoryName=repo, layerDigest=digest)["downloadUrl"]
    ecr.delete_repository(repositoryName=repo, force=True)
    gone = httpx.get(url)
    assert gone.status_code == 404
    assert gone.json()["__type"] == "RepositoryNotFoundException"


# --- the aws CLI ---------------------------------------------------------------------------------


@pytest.mark.slow  # the aws CLI
def test_aws_cli_uploads_binary_parts_from_files(server: Server, repo: str, tmp_path: Path) -> None:
    data = bytes(range(256)) * 40 + b"\x00\xff\n\r"
    (tmp_path / "a.bin").write_bytes(data[:5000])
    (tmp_path / "b.bin").write_bytes(data[5000:])

    def aws(*args: str) -> Any:
        return aws_json(server, *args)

    upload_id = aws("initiate-layer-upload", "--repository-name", repo)["uploadId"]
    for first, name, size in ((0, "a.bin", 5000), (5000, "b.bin", len(data) - 5000)):
        answer = aws(
            "upload-layer-part",
            "--repository-name",
            repo,
            "--upload-id",
            upload_id,
            "--part-first-byte",
            str(first),
            "--part-last-byte",
            str(first + size - 1),
            "--layer-part-blob",
            f"fileb://{tmp_path / name}",
        )
        assert answer["lastByteReceived"] == first + size - 1
    done = aws(
        "complete-layer-upload",
        "--repository-name",
        repo,
        "--upload-id",
        upload_id,
        "--layer-digests",
        sha(data),
    )
    assert done["layerDigest"] == sha(data)
    url = aws("get-download-url-for-layer", "--repository-name", repo, "--layer-digest", sha(data))
    assert httpx.get(url["downloadUrl"]).content == data
