"""The OCI Distribution API under ``/v2/``, driven over raw HTTP (httpx) against a real server.

Every endpoint and error case of the distribution spec v1.1 as openecr answers it, the ECR
semantics on the registry side (NAME_UNKNOWN, immutable tags, "Requested image not found"),
login with GetAuthorizationToken passwords, and the one core: what goes in through one API
comes out of the other byte for byte.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from conftest import InProcessServer, Server, ServerFactory, free_port, make_image, upload_blob
from openecr.service.tokens import TokenService

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
ACCOUNT = "123456789012"
MIB = 1024 * 1024


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha512(data: bytes) -> str:
    return "sha512:" + hashlib.sha512(data).hexdigest()


def error_of(response: httpx.Response) -> tuple[int, str, str]:
    """(status, code, message) of a spec error document; checks the document's shape."""
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    [error] = body["errors"]
    assert set(error) == {"code", "message", "detail"}
    return response.status_code, error["code"], error["message"]


def not_found_message(name: str, account: str = ACCOUNT) -> str:
    return f"The repository with name '{name}' does not exist in the registry with id '{account}'"


@pytest.fixture
def v2(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.endpoint, timeout=30) as client:
        yield client


# --- pushing through /v2 -------------------------------------------------------------------------


def push_blob(client: httpx.Client, repo: str, data: bytes, *, digest: str | None = None) -> str:
    """POST then PUT (monolithic); returns the digest."""
    digest = digest or sha256(data)
    started = client.post(f"/v2/{repo}/blobs/uploads/")
    assert started.status_code == 202, started.text
    done = client.put(started.headers["location"], params={"digest": digest}, content=data)
    assert done.status_code == 201, done.text
    return digest


def image_manifest(
    client: httpx.Client,
    repo: str,
    *,
    seed: str = "",
    media_type: str | None = OCI_MANIFEST,
    extra: dict[str, Any] | None = None,
) -> bytes:
    """Push a config and a layer, and return an image manifest referencing them (not pushed)."""
    docker = media_type == DOCKER_MANIFEST
    config = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed}).encode()
    layer = f"layer {seed} {uuid.uuid4().hex}".encode()
    doc: dict[str, Any] = {"schemaVersion": 2}
    if media_type is not None:
        doc["mediaType"] = media_type
    doc["config"] = {
        "mediaType": DOCKER_CONFIG if docker else OCI_CONFIG,
        "digest": push_blob(client, repo, config),
        "size": len(config),
    }
    doc["layers"] = [
        {
            "mediaType": DOCKER_LAYER if docker else OCI_LAYER,
            "digest": push_blob(client, repo, layer),
            "size": len(layer),
        }
    ]
    doc.update(extra or {})
    return json.dumps(doc, indent=2).encode()


def put_manifest(
    client: httpx.Client, repo: str, reference: str, raw: bytes, media_type: str = OCI_MANIFEST
) -> httpx.Response:
    return client.put(
        f"/v2/{repo}/manifests/{reference}", content=raw, headers={"Content-Type": media_type}
    )


def push_image(
    client: httpx.Client, repo: str, tag: str, *, seed: str = "", media_type: str = OCI_MANIFEST
) -> tuple[bytes, str]:
    raw = image_manifest(client, repo, seed=seed, media_type=media_type)
    response = put_manifest(client, repo, tag, raw, media_type)
    assert response.status_code == 201, response.text
    return raw, sha256(raw)


# --- base, routing -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v2/", "/v2"])
def test_base_endpoint(v2: httpx.Client, path: str) -> None:
    response = v2.get(path)
    assert response.status_code == 200
    assert response.headers["docker-distribution-api-version"] == "registry/2.0"
    assert response.json() == {}


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/v2/nothing/here", 404, "UNSUPPORTED"),
        ("GET", "/v2/repo/blobs", 404, "UNSUPPORTED"),
        ("POST", "/v2/", 405, "UNSUPPORTED"),
        ("POST", "/v2/_catalog", 405, "UNSUPPORTED"),
        ("POST", "/v2/some/repo/manifests/latest", 405, "UNSUPPORTED"),
        ("PUT", "/v2/some/repo/blobs/sha256:" + "a" * 64, 405, "UNSUPPORTED"),
        ("GET", "/v2/some/repo/blobs/uploads/", 405, "UNSUPPORTED"),
        ("POST", "/v2/some/repo/blobs/uploads/some-id", 405, "UNSUPPORTED"),
        ("DELETE", "/v2/some/repo/tags/list", 405, "UNSUPPORTED"),
        ("PUT", "/v2/some/repo/referrers/sha256:" + "a" * 64, 405, "UNSUPPORTED"),
    ],
)
def test_unknown_routes_and_methods(
    v2: httpx.Client, method: str, path: str, status: int, code: str
) -> None:
    response = v2.request(method, path)
    assert error_of(response)[:2] == (status, code)
    assert response.headers["docker-distribution-api-version"] == "registry/2.0"


# --- blob uploads --------------------------------------------------------------------------------


def test_monolithic_upload_post_then_put(v2: httpx.Client, repo: str) -> None:
    data = b"monolithic blob " * 100
    started = v2.post(f"/v2/{repo}/blobs/uploads/")
    assert started.status_code == 202
    location = started.headers["location"]
    upload_id = started.headers["docker-upload-uuid"]
    assert location == f"/v2/{repo}/blobs/uploads/{upload_id}"
    assert started.headers["blob-upload-session-id"] == upload_id
    assert started.headers["range"] == "0-0"
    assert started.headers["content-length"] == "0"
    done = v2.put(
        location,
        params={"digest": sha256(data)},
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert done.status_code == 201
    assert done.headers["location"] == f"/v2/{repo}/blobs/{sha256(data)}"
    assert done.headers["docker-content-digest"] == sha256(data)
    assert done.content == b""
    fetched = v2.get(done.headers["location"])
    assert fetched.status_code == 200
    assert fetched.content == data
    assert fetched.headers["docker-content-digest"] == sha256(data)
    assert fetched.headers["content-length"] == str(len(data))
    head = v2.head(done.headers["location"])
    assert head.status_code == 200
    assert head.headers["content-length"] == str(len(data))
    assert head.headers["docker-content-digest"] == sha256(data)
    assert head.content == b""


def test_upload_url_without_trailing_slash(v2: httpx.Client, repo: str) -> None:
    started = v2.post(f"/v2/{repo}/blobs/uploads")
    assert started.status_code == 202
    assert started.headers["location"].startswith(f"/v2/{repo}/blobs/uploads/")


def test_single_post_upload(v2: httpx.Client, repo: str) -> None:
    data = b"single post"
    response = v2.post(f"/v2/{repo}/blobs/uploads/", params={"digest": sha256(data)}, content=data)
    assert response.status_code == 201
    assert response.headers["location"] == f"/v2/{repo}/blobs/{sha256(data)}"
    assert response.headers["docker-content-digest"] == sha256(data)
    assert v2.get(response.headers["location"]).content == data


def test_single_post_with_wrong_digest_stores_nothing(v2: httpx.Client, repo: str) -> None:
    data = b"the real content"
    claimed = sha256(b"something else")
    response = v2.post(f"/v2/{repo}/blobs/uploads/", params={"digest": claimed}, content=data)
    assert error_of(response)[:2] == (400, "DIGEST_INVALID")
    for digest in (claimed, sha256(data)):
        assert error_of(v2.get(f"/v2/{repo}/blobs/{digest}"))[:2] == (404, "BLOB_UNKNOWN")


def test_chunked_upload_with_status(v2: httpx.Client, repo: str) -> None:
    data = bytes(range(256)) * 40
    parts = [data[:3000], data[3000:7000], data[7000:]]
    location = v2.post(f"/v2/{repo}/blobs/uploads/", headers={"Content-Length": "0"}).headers[
        "location"
    ]
    offset = 0
    for part in parts[:-1]:
        response = v2.patch(
            location,
            content=part,
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{offset}-{offset + len(part) - 1}",
            },
        )
        assert response.status_code == 202, response.text
        offset += len(part)
        assert response.headers["range"] == f"0-{offset - 1}"
        location = response.headers["location"]
        status = v2.get(location)
        assert status.status_code == 204
        assert status.headers["range"] == f"0-{offset - 1}"
        assert status.headers["location"] == location
    last = parts[-1]
    done = v2.put(
        location,
        params={"digest": sha256(data)},
        content=last,
        headers={"Content-Range": f"{offset}-{offset + len(last) - 1}"},
    )
    assert done.status_code == 201, done.text
    assert v2.get(f"/v2/{repo}/blobs/{sha256(data)}").content == data


def test_streamed_patch_without_content_range_then_empty_put(v2: httpx.Client, repo: str) -> None:
    """docker's way: one PATCH with the whole blob (chunked transfer), then a bodiless PUT."""
    data = b"x" * (3 * MIB + 12345)

    def body() -> Iterator[bytes]:
        for start in range(0, len(data), 64 * 1024):
            yield data[start : start + 64 * 1024]

    location = v2.post(f"/v2/{repo}/blobs/uploads/").headers["location"]
    response = v2.patch(location, content=body())
    assert response.status_code == 202, response.text
    assert response.headers["range"] == f"0-{len(data) - 1}"
    done = v2.put(response.headers["location"], params={"digest": sha256(data)})
    assert done.status_code == 201
    fetched = v2.get(f"/v2/{repo}/blobs/{sha256(data)}")
    assert fetched.content == data


def test_out_of_order_chunk_is_416_and_upload_resumes(v2: httpx.Client, repo: str) -> None:
    data = b"0123456789" * 10
    location = v2.post(f"/v2/{repo}/blobs/uploads/").headers["location"]
    first = v2.patch(location, content=data[:40], headers={"Content-Range": "0-39"})
    assert first.status_code == 202
    skipped = v2.patch(location, content=data[50:60], headers={"Content-Range": "50-59"})
    assert error_of(skipped)[:2] == (416, "RANGE_INVALID")
    assert skipped.headers["range"] == "0-39"
    assert skipped.headers["location"] == location
    repeated = v2.patch(location, content=data[:40], headers={"Content-Range": "0-39"})
    assert error_of(repeated)[:2] == (416, "RANGE_INVALID")
    assert v2.get(location).headers["range"] == "0-39"
    rest = v2.patch(location, content=data[40:], headers={"Content-Range": f"40-{len(data) - 1}"})
    assert rest.status_code == 202
    done = v2.put(location, params={"digest": sha256(data)})
    assert done.status_code == 201
    assert v2.get(f"/v2/{repo}/blobs/{sha256(data)}").content == data


@pytest.mark.parametrize(
    ("content_range", "status", "code"),
    [
        ("garbage", 416, "RANGE_INVALID"),
        ("10-5", 416, "RANGE_INVALID"),
        ("0-", 416, "RANGE_INVALID"),
        ("0-99", 400, "SIZE_INVALID"),  # the body holds 10 bytes
    ],
)
def test_bad_content_range(
    v2: httpx.Client, repo: str, content_range: str, status: int, code: str
) -> None:
    location = v2.post(f"/v2/{repo}/blobs/uploads/").headers["location"]
    response = v2.patch(location, content=b"0123456789", headers={"Content-Range": content_range})
    assert error_of(response)[:2] == (status, code)
    assert v2.get(location).headers["range"] == "0-0"
    good = v2.patch(location, content=b"0123456789", headers={"Content-Range": "0-9"})
    assert good.status_code == 202


def test_content_range_accepts_the_bytes_prefix(v2: httpx.Client, repo: str) -> None:
    location = v2.post(f"/v2/{repo}/blobs/uploads/").headers["location"]
    response = v2.patch(location, content=b"abc", headers={"Content-Range": "bytes 0-2/3"})
    assert response.status_code == 202
    assert response.headers["range"] == "0-2"


def test_digest_mismatch_on_put_stores_nothing_and_ends_the_upload(
    v2: httpx.Client, repo: str
) -> None:
    data = b"some bytes"
    location = v2.post(f"/v2/{repo}/blobs/uploads/").headers["location"]
    wrong = sha256(b"other bytes")
    response = v2.put(location, params={"digest": wrong}, content=data)
    status, code, message = error_of(response)
    assert (status, code) == (400, "DIGEST_INVALID")
    assert wrong in message
    for digest in (wrong, sha256(data)):
        assert error_of(v2.get(f"/v2/{repo}/blobs/{digest}"))[:2] == (404, "BLOB_UNKNOWN")
    assert error_of(v2.get(location))[:2] == (404, "BLOB_UPLOAD_UNKNOWN")


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({}, "DIGEST_INVALID"),
        ({"digest": "sha256:abc"}, "DIGEST_INVALID"),
        ({"digest": "md5:" + "a" * 32}, "DIGEST_INVALID"),
        ({"digest": "nonsense"}, "DIGEST_INVALID"),
    ],
)
def test_put_needs_a_valid_digest(
    v2: httpx.Client, repo: str, params: dict[str, str], code: str
) -> None:
    location = v2.post(f"/v2/{repo}/blobs/uploads/").headers["location"]
    response = v2.put(location, params=params, content=b"data")
    assert error_of(response)[:2] == (400, code)
    assert v2.get(location).status_code == 204  # the session survives a malformed request


def test_cancel_upload(v2: httpx.Client, repo: str) -> None:
    location = v2.post(f"/v2/{repo}/blobs/uploads/").headers["location"]
    assert v2.patch(location, content=b"abc").status_code == 202
    cancelled = v2.delete(location)
    assert cancelled.status_code == 204
    for method in ("GET", "PATCH", "PUT", "DELETE"):
        response = v2.request(method, location, params={"digest": sha256(b"abc")}, content=b"")
        assert error_of(response)[:2] == (404, "BLOB_UPLOAD_UNKNOWN"), method


@pytest.mark.parametrize("method", ["GET", "PATCH", "PUT", "DELETE"])
def test_unknown_upload(v2: httpx.Client, repo: str, method: str) -> None:
    url = f"/v2/{repo}/blobs/uploads/{uuid.uuid4()}"
    response = v2.request(method, url, params={"digest": sha256(b"")}, content=b"")
    assert error_of(response)[:2] == (404, "BLOB_UPLOAD_UNKNOWN")


def test_upload_belongs_to_its_repository(v2: httpx.Client, ecr: Any, repo: str) -> None:
    other = f"{repo}-other"
    ecr.create_repository(repositoryName=other)
    upload_id = v2.post(f"/v2/{repo}/blobs/uploads/").headers["docker-upload-uuid"]
    response = v2.patch(f"/v2/{other}/blobs/uploads/{upload_id}", content=b"abc")
    assert error_of(response)[:2] == (404, "BLOB_UPLOAD_UNKNOWN")


def test_empty_blob(v2: httpx.Client, repo: str) -> None:
    digest = push_blob(v2, repo, b"")
    response = v2.get(f"/v2/{repo}/blobs/{digest}")
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-length"] == "0"


def test_sha512_blob(v2: httpx.Client, repo: str) -> None:
    data = b"hashed with sha512"
    digest = push_blob(v2, repo, data, digest=sha512(data))
    response = v2.get(f"/v2/{repo}/blobs/{digest}")
    assert response.content == data
    assert response.headers["docker-content-digest"] == sha512(data)
    assert error_of(v2.get(f"/v2/{repo}/blobs/{sha256(data)}"))[:2] == (404, "BLOB_UNKNOWN")
    wrong = v2.post(f"/v2/{repo}/blobs/uploads/", params={"digest": sha512(b"nope")}, content=data)
    assert error_of(wrong)[:2] == (400, "DIGEST_INVALID")


def test_interrupted_part_is_dropped_whole(server: Server, v2: httpx.Client, repo: str) -> None:
    """A client that goes away mid-body leaves the upload as it was before that part."""
    head = b"h" * 100
    location = v2.post(f"/v2/{repo}/blobs/uploads/").headers["location"]
    assert v2.patch(location, content=head, headers={"Content-Range": "0-99"}).status_code == 202
    declared = 3 * MIB
    sent = b"p" * (MIB + MIB // 2)  # more than one batch reaches the store before the cut
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(
            (
                f"PATCH {location} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Content-Range: 100-{100 + declared - 1}\r\nContent-Length: {declared}\r\n\r\n"
            ).encode()
            + sent
        )
        # the status reports finished parts only: watch the session's file grow instead
        sessions = server.data_dir / "uploads"
        wait_for(
            lambda: any(f.stat().st_size > 100 for f in sessions.iterdir() if f.suffix != ".token"),
            "the part to stream in",
        )
    wait_for(
        lambda: all(f.stat().st_size <= 100 for f in sessions.iterdir() if f.suffix != ".token"),
        "the part to be dropped",
    )
    assert v2.get(location).headers["range"] == "0-99"
    rest = b"r" * 50
    assert v2.patch(location, content=rest, headers={"Content-Range": "100-149"}).status_code == 202
    done = v2.put(location, params={"digest": sha256(head + rest)})
    assert done.status_code == 201
    assert v2.get(f"/v2/{repo}/blobs/{sha256(head + rest)}").content == head + rest


def wait_for(condition: Any, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


# --- cross-repository mount ----------------------------------------------------------------------


def test_mount_from_another_repository(v2: httpx.Client, ecr: Any, repo: str) -> None:
    data = b"shared layer"
    digest = push_blob(v2, repo, data)
    target = f"{repo}-mounted"
    ecr.create_repository(repositoryName=target)
    assert error_of(v2.get(f"/v2/{target}/blobs/{digest}"))[:2] == (404, "BLOB_UNKNOWN")
    response = v2.post(f"/v2/{target}/blobs/uploads/", params={"mount": digest, "from": repo})
    assert response.status_code == 201
    assert response.headers["location"] == f"/v2/{target}/blobs/{digest}"
    assert response.headers["docker-content-digest"] == digest
    assert v2.get(f"/v2/{target}/blobs/{digest}").content == data


@pytest.mark.parametrize(
    "params",
    [
        {"mount": sha256(b"never uploaded"), "from": "SOURCE"},
        {"mount": "SOURCE-DIGEST", "from": "no/such-repo"},
        {"mount": "not-a-digest", "from": "SOURCE"},
        {"mount": "SOURCE-DIGEST", "from": "Invalid Name"},
        {"mount": "SOURCE-DIGEST"},
    ],
)
def test_mount_that_cannot_happen_starts_an_upload(
    v2: httpx.Client, ecr: Any, repo: str, params: dict[str, str]
) -> None:
    digest = push_blob(v2, repo, b"source blob")
    target = f"{repo}-target"
    ecr.create_repository(repositoryName=target)
    query = {
        k: v.replace("SOURCE-DIGEST", digest).replace("SOURCE", repo) for k, v in params.items()
    }
    response = v2.post(f"/v2/{target}/blobs/uploads/", params=query)
    assert response.status_code == 202
    assert response.headers["location"].startswith(f"/v2/{target}/blobs/uploads/")
    assert error_of(v2.get(f"/v2/{target}/blobs/{digest}"))[:2] == (404, "BLOB_UNKNOWN")


# --- blob reads, ranges, deletes -----------------------------------------------------------------

RANGE_DATA = b"0123456789abcdefghij"


@pytest.mark.parametrize(
    ("header", "status", "body", "content_range"),
    [
        ("bytes=0-4", 206, b"01234", "bytes 0-4/20"),
        ("bytes=15-", 206, b"fghij", "bytes 15-19/20"),
        ("bytes=-3", 206, b"hij", "bytes 17-19/20"),
        ("bytes=10-1000", 206, b"abcdefghij", "bytes 10-19/20"),
        ("bytes=-100", 206, RANGE_DATA, "bytes 0-19/20"),
        ("bytes=0-1,5-6", 200, RANGE_DATA, None),
    ],
)
def test_blob_range(
    v2: httpx.Client,
    repo: str,
    header: str,
    status: int,
    body: bytes,
    content_range: str | None,
) -> None:
    digest = push_blob(v2, repo, RANGE_DATA)
    response = v2.get(f"/v2/{repo}/blobs/{digest}", headers={"Range": header})
    assert response.status_code == status
    assert response.content == body
    assert response.headers["content-length"] == str(len(body))
    assert response.headers.get("content-range") == content_range
    head = v2.head(f"/v2/{repo}/blobs/{digest}", headers={"Range": header})
    assert head.status_code == status
    assert head.headers["content-length"] == str(len(body))


@pytest.mark.parametrize(
    "header", ["bytes=20-", "bytes=25-30", "bytes=-0", "bytes=5-2", "items=0-1", "bytes=x-y", "0-5"]
)
def test_unsatisfiable_range(v2: httpx.Client, repo: str, header: str) -> None:
    digest = push_blob(v2, repo, RANGE_DATA)
    response = v2.get(f"/v2/{repo}/blobs/{digest}", headers={"Range": header})
    assert error_of(response)[:2] == (416, "RANGE_INVALID")
    assert response.headers["content-range"] == "bytes */20"


def test_blob_reads_are_per_repository(v2: httpx.Client, ecr: Any, repo: str) -> None:
    digest = push_blob(v2, repo, b"only in the first repository")
    other = f"{repo}-other"
    ecr.create_repository(repositoryName=other)
    for method in ("GET", "HEAD"):
        response = v2.request(method, f"/v2/{other}/blobs/{digest}")
        assert response.status_code == 404
    status, code, message = error_of(v2.get(f"/v2/{other}/blobs/{digest}"))
    assert (status, code) == (404, "BLOB_UNKNOWN")
    assert digest in message


@pytest.mark.parametrize("digest", ["sha256:abc", "sha256:" + "G" * 64, "foo", "sha1:" + "a" * 40])
def test_blob_with_invalid_digest(v2: httpx.Client, repo: str, digest: str) -> None:
    for method in ("GET", "DELETE"):
        response = v2.request(method, f"/v2/{repo}/blobs/{digest}")
        assert error_of(response)[:2] == (400, "DIGEST_INVALID")


def test_delete_blob(v2: httpx.Client, repo: str) -> None:
    digest = push_blob(v2, repo, b"to be deleted")
    deleted = v2.delete(f"/v2/{repo}/blobs/{digest}")
    assert deleted.status_code == 202
    assert error_of(v2.get(f"/v2/{repo}/blobs/{digest}"))[:2] == (404, "BLOB_UNKNOWN")
    assert error_of(v2.delete(f"/v2/{repo}/blobs/{digest}"))[:2] == (404, "BLOB_UNKNOWN")


def test_deleting_a_blob_leaves_other_repositories_alone(
    v2: httpx.Client, ecr: Any, repo: str
) -> None:
    other = f"{repo}-keeps"
    ecr.create_repository(repositoryName=other)
    digest = push_blob(v2, repo, b"held twice")
    push_blob(v2, other, b"held twice")
    assert v2.delete(f"/v2/{repo}/blobs/{digest}").status_code == 202
    assert v2.get(f"/v2/{other}/blobs/{digest}").content == b"held twice"


# --- manifests -----------------------------------------------------------------------------------


@pytest.mark.parametrize("media_type", [OCI_MANIFEST, DOCKER_MANIFEST])
def test_push_and_pull_manifest_by_tag_and_digest(
    v2: httpx.Client, repo: str, media_type: str
) -> None:
    raw = image_manifest(v2, repo, seed="pull", media_type=media_type)
    digest = sha256(raw)
    pushed = put_manifest(v2, repo, "v1", raw, media_type)
    assert pushed.status_code == 201
    assert pushed.headers["location"] == f"/v2/{repo}/manifests/{digest}"
    assert pushed.headers["docker-content-digest"] == digest
    assert pushed.headers["content-length"] == "0"
    assert "oci-subject" not in pushed.headers
    for reference in ("v1", digest):
        got = v2.get(f"/v2/{repo}/manifests/{reference}", headers={"Accept": media_type})
        assert got.status_code == 200
        assert got.content == raw
        assert got.headers["content-type"] == media_type
        assert got.headers["docker-content-digest"] == digest
        head = v2.head(f"/v2/{repo}/manifests/{reference}")
        assert head.status_code == 200
        assert head.content == b""
        assert head.headers["content-length"] == str(len(raw))
        assert head.headers["docker-content-digest"] == digest
        assert head.headers["content-type"] == media_type


def test_push_by_digest_leaves_the_image_untagged(v2: httpx.Client, ecr: Any, repo: str) -> None:
    raw = image_manifest(v2, repo, seed="untagged")
    digest = sha256(raw)
    response = put_manifest(v2, repo, digest, raw)
    assert response.status_code == 201
    assert response.headers["docker-content-digest"] == digest
    assert v2.get(f"/v2/{repo}/manifests/{digest}").content == raw
    assert v2.get(f"/v2/{repo}/tags/list").json()["tags"] == []
    listed = ecr.list_images(repositoryName=repo)["imageIds"]
    assert listed == [{"imageDigest": digest}]


def test_push_by_sha512_digest(v2: httpx.Client, repo: str) -> None:
    raw = image_manifest(v2, repo, seed="sha512")
    digest = sha512(raw)
    response = put_manifest(v2, repo, digest, raw)
    assert response.status_code == 201
    assert response.headers["docker-content-digest"] == digest
    got = v2.get(f"/v2/{repo}/manifests/{digest}")
    assert got.content == raw
    assert got.headers["docker-content-digest"] == digest


@pytest.mark.parametrize("algorithm", [sha256, sha512])
def test_push_by_wrong_digest(v2: httpx.Client, repo: str, algorithm: Any) -> None:
    raw = image_manifest(v2, repo, seed="wrong")
    response = put_manifest(v2, repo, algorithm(raw + b" "), raw)
    assert error_of(response)[:2] == (400, "DIGEST_INVALID")
    assert v2.get(f"/v2/{repo}/manifests/{sha256(raw)}").status_code == 404


def test_pushing_the_same_manifest_again_is_fine(v2: httpx.Client, repo: str) -> None:
    raw, digest = push_image(v2, repo, "v1", seed="again")
    for reference in ("v1", digest, "v2"):
        response = put_manifest(v2, repo, reference, raw)
        assert response.status_code == 201, reference
        assert response.headers["docker-content-digest"] == digest
    assert v2.get(f"/v2/{repo}/tags/list").json()["tags"] == ["v1", "v2"]


def test_moving_a_tag(v2: httpx.Client, repo: str) -> None:
    push_image(v2, repo, "latest", seed="one")
    raw, digest = push_image(v2, repo, "latest", seed="two")
    got = v2.get(f"/v2/{repo}/manifests/latest")
    assert got.content == raw
    assert got.headers["docker-content-digest"] == digest


def test_manifest_without_media_type_field(v2: httpx.Client, repo: str) -> None:
    """umoci writes manifests without ``mediaType``; the Content-Type says what they are."""
    raw = image_manifest(v2, repo, seed="umoci", media_type=None)
    assert b'mediaType": "application/vnd.oci.image.manifest' not in raw
    response = put_manifest(v2, repo, "umoci", raw, OCI_MANIFEST)
    assert response.status_code == 201
    got = v2.get(f"/v2/{repo}/manifests/umoci", headers={"Accept": OCI_MANIFEST})
    assert got.content == raw
    assert got.headers["content-type"] == OCI_MANIFEST


def test_manifest_without_media_type_or_content_type_is_sniffed(
    v2: httpx.Client, repo: str
) -> None:
    raw = image_manifest(v2, repo, seed="sniffed", media_type=None)
    response = v2.put(f"/v2/{repo}/manifests/sniffed", content=raw)
    assert response.status_code == 201
    assert v2.get(f"/v2/{repo}/manifests/sniffed").headers["content-type"] == OCI_MANIFEST


def test_manifest_size_limit(v2: httpx.Client, repo: str) -> None:
    layers = [{"mediaType": OCI_LAYER, "digest": sha256(b"%d" % i), "size": 1} for i in range(2)]
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": layers}
    raw = json.dumps({**doc, "annotations": {"pad": "x" * (4 * MIB)}}).encode()
    response = put_manifest(v2, repo, "huge", raw)
    status, code, _ = error_of(response)
    assert (status, code) == (413, "MANIFEST_INVALID")

    def chunked() -> Iterator[bytes]:  # no Content-Length: the limit holds while streaming
        yield raw[: 2 * MIB]
        yield raw[2 * MIB :]

    streamed = v2.put(
        f"/v2/{repo}/manifests/huge", content=chunked(), headers={"Content-Type": OCI_MANIFEST}
    )
    assert error_of(streamed)[:2] == (413, "MANIFEST_INVALID")


def test_manifest_just_under_the_limit(v2: httpx.Client, repo: str) -> None:
    raw = image_manifest(v2, repo, seed="big")
    doc = json.loads(raw)
    doc["annotations"] = {"pad": ""}
    padding = 4 * MIB - len(json.dumps(doc).encode())
    doc["annotations"]["pad"] = "x" * padding
    big = json.dumps(doc).encode()
    assert len(big) == 4 * MIB
    response = put_manifest(v2, repo, "big", big)
    assert response.status_code == 201
    assert v2.get(f"/v2/{repo}/manifests/big").content == big


@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        (b"not json", OCI_MANIFEST),
        (b"[]", OCI_MANIFEST),
        (b"", OCI_MANIFEST),
        (b'{"schemaVersion": 2, "mediaType": "application/vnd.unknown+json"}', OCI_MANIFEST),
        (b'{"schemaVersion": 3, "mediaType": "' + OCI_MANIFEST.encode() + b'"}', OCI_MANIFEST),
        (
            b'{"schemaVersion": 2, "mediaType": "' + OCI_MANIFEST.encode() + b'", "config": 1}',
            OCI_MANIFEST,
        ),
    ],
)
def test_invalid_manifest(v2: httpx.Client, repo: str, raw: bytes, content_type: str) -> None:
    response = put_manifest(v2, repo, "bad", raw, content_type)
    assert error_of(response)[:2] == (400, "MANIFEST_INVALID")


def test_content_type_must_match_the_media_type_field(v2: httpx.Client, repo: str) -> None:
    raw = image_manifest(v2, repo, seed="mismatch", media_type=OCI_MANIFEST)
    response = put_manifest(v2, repo, "v1", raw, DOCKER_MANIFEST)
    assert error_of(response)[:2] == (400, "MANIFEST_INVALID")


def test_manifest_with_unknown_blobs(v2: httpx.Client, repo: str) -> None:
    missing = sha256(b"never pushed layer")
    config = push_blob(v2, repo, b"{}")
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config, "size": 2},
        "layers": [{"mediaType": OCI_LAYER, "digest": missing, "size": 10}],
    }
    status, code, message = error_of(put_manifest(v2, repo, "v1", json.dumps(doc).encode()))
    assert (status, code) == (404, "MANIFEST_BLOB_UNKNOWN")
    assert missing in message


def test_index_and_its_children(v2: httpx.Client, repo: str) -> None:
    children = []
    for arch in ("amd64", "arm64"):
        raw, digest = push_image(v2, repo, f"only-{arch}", seed=arch, media_type=DOCKER_MANIFEST)
        children.append(
            {
                "mediaType": DOCKER_MANIFEST,
                "digest": digest,
                "size": len(raw),
                "platform": {"architecture": arch, "os": "linux"},
            }
        )
    index = json.dumps(
        {"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": children}
    ).encode()
    response = put_manifest(v2, repo, "multi", index, DOCKER_LIST)
    assert response.status_code == 201
    got = v2.get(f"/v2/{repo}/manifests/multi", headers={"Accept": DOCKER_LIST})
    assert got.content == index
    assert got.headers["content-type"] == DOCKER_LIST
    # a child of a stored index cannot be deleted on its own (ECR's rule)
    child = v2.delete(f"/v2/{repo}/manifests/{children[0]['digest']}")
    status, code, message = error_of(child)
    assert (status, code) == (400, "UNSUPPORTED")
    assert message == f"Requested image referenced by manifest list: [{sha256(index)}]"
    assert v2.delete(f"/v2/{repo}/manifests/{sha256(index)}").status_code == 202
    assert v2.delete(f"/v2/{repo}/manifests/{children[0]['digest']}").status_code == 202


def test_index_with_unknown_children(v2: httpx.Client, repo: str) -> None:
    missing = sha256(b"no such manifest")
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": missing, "size": 10}],
        }
    ).encode()
    response = put_manifest(v2, repo, "multi", index, OCI_INDEX)
    assert error_of(response)[:2] == (404, "MANIFEST_BLOB_UNKNOWN")


@pytest.mark.parametrize(
    ("accept", "by", "status"),
    [
        (None, "tag", 200),
        ([OCI_MANIFEST], "tag", 200),
        ([DOCKER_MANIFEST, f"{OCI_INDEX}, {OCI_MANIFEST}"], "tag", 200),  # several headers
        ([f"{DOCKER_MANIFEST}, {OCI_MANIFEST};q=0.5"], "tag", 200),
        (["*/*"], "tag", 200),
        ([f"{DOCKER_MANIFEST}, application/*"], "tag", 200),
        ([DOCKER_MANIFEST], "digest", 200),  # by digest the stored manifest is served as is
        ([DOCKER_LIST], "digest", 200),
    ],
)
def test_content_negotiation_serves_the_stored_manifest(
    v2: httpx.Client, repo: str, accept: list[str] | None, by: str, status: int
) -> None:
    raw, digest = push_image(v2, repo, "v1", seed="negotiate")
    reference = "v1" if by == "tag" else digest
    headers = [("Accept", value) for value in accept or []]
    response = v2.get(f"/v2/{repo}/manifests/{reference}", headers=headers)
    assert response.status_code == status
    assert response.content == raw
    assert response.headers["content-type"] == OCI_MANIFEST
    assert response.headers["docker-content-digest"] == digest


@pytest.mark.parametrize("accept", [[DOCKER_MANIFEST], [f"{DOCKER_MANIFEST}, {OCI_MANIFEST};q=0"]])
def test_content_negotiation_converts_by_tag(
    v2: httpx.Client, ecr: Any, repo: str, accept: list[str]
) -> None:
    """As ECR does for a pull by tag: an OCI manifest to a client that takes only Docker v2
    is served converted, and the digest header names the bytes served."""
    _, digest = push_image(v2, repo, "v1", seed="convert")
    headers = [("Accept", value) for value in accept]
    response = v2.get(f"/v2/{repo}/manifests/v1", headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == DOCKER_MANIFEST
    assert json.loads(response.content)["mediaType"] == DOCKER_MANIFEST
    assert response.headers["docker-content-digest"] == sha256(response.content) != digest
    got = ecr.batch_get_image(
        repositoryName=repo, imageIds=[{"imageTag": "v1"}], acceptedMediaTypes=[DOCKER_MANIFEST]
    )
    assert got["images"][0]["imageManifest"].encode() == response.content


def test_content_negotiation_without_a_form_the_client_takes(v2: httpx.Client, repo: str) -> None:
    raw, digest = push_image(v2, repo, "v1", seed="index-child")
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": digest, "size": len(raw)}],
        }
    ).encode()
    assert put_manifest(v2, repo, "index", index, OCI_INDEX).status_code == 201
    response = v2.get(f"/v2/{repo}/manifests/index", headers={"Accept": OCI_MANIFEST})
    assert error_of(response) == (404, "MANIFEST_UNKNOWN", "Requested image not found")
    by_digest = v2.get(f"/v2/{repo}/manifests/{sha256(index)}", headers={"Accept": OCI_MANIFEST})
    assert by_digest.content == index


@pytest.mark.parametrize("reference", ["missing", "sha256:" + "0" * 64, "sha512:" + "0" * 128])
def test_pull_of_a_missing_image(v2: httpx.Client, repo: str, reference: str) -> None:
    for method in ("GET", "HEAD"):
        response = v2.request(method, f"/v2/{repo}/manifests/{reference}")
        assert response.status_code == 404
    response = v2.get(f"/v2/{repo}/manifests/{reference}")
    assert error_of(response) == (404, "MANIFEST_UNKNOWN", "Requested image not found")


@pytest.mark.parametrize(
    ("reference", "code"),
    [
        ("bad!tag", "TAG_INVALID"),
        ("t" * 301, "TAG_INVALID"),
        ("sha256:abc", "DIGEST_INVALID"),
        ("sha256:" + "A" * 64, "DIGEST_INVALID"),
        ("md5:" + "0" * 32, "DIGEST_INVALID"),
    ],
)
def test_invalid_reference(v2: httpx.Client, repo: str, reference: str, code: str) -> None:
    raw = b'{"schemaVersion": 2}'
    for method in ("GET", "HEAD", "PUT", "DELETE"):
        response = v2.request(method, f"/v2/{repo}/manifests/{reference}", content=raw)
        assert response.status_code == 400, method
    assert error_of(v2.get(f"/v2/{repo}/manifests/{reference}"))[:2] == (400, code)


def test_delete_manifest_by_digest(v2: httpx.Client, ecr: Any, repo: str) -> None:
    _, digest = push_image(v2, repo, "v1", seed="delete")
    put_manifest(v2, repo, "v2", v2.get(f"/v2/{repo}/manifests/v1").content)
    response = v2.delete(f"/v2/{repo}/manifests/{digest}")
    assert response.status_code == 202
    for reference in ("v1", "v2", digest):
        assert error_of(v2.get(f"/v2/{repo}/manifests/{reference}"))[:2] == (
            404,
            "MANIFEST_UNKNOWN",
        )
    assert error_of(v2.delete(f"/v2/{repo}/manifests/{digest}"))[:2] == (404, "MANIFEST_UNKNOWN")
    assert ecr.list_images(repositoryName=repo)["imageIds"] == []


def test_delete_tag_keeps_the_image(v2: httpx.Client, ecr: Any, repo: str) -> None:
    raw, digest = push_image(v2, repo, "v1", seed="untag")
    assert v2.delete(f"/v2/{repo}/manifests/v1").status_code == 202
    assert error_of(v2.get(f"/v2/{repo}/manifests/v1"))[:2] == (404, "MANIFEST_UNKNOWN")
    assert v2.get(f"/v2/{repo}/manifests/{digest}").content == raw
    assert ecr.list_images(repositoryName=repo)["imageIds"] == [{"imageDigest": digest}]
    assert error_of(v2.delete(f"/v2/{repo}/manifests/v1"))[:2] == (404, "MANIFEST_UNKNOWN")


# --- ECR semantics on the registry side ----------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "manifests/latest"),
        ("HEAD", "manifests/latest"),
        ("PUT", "manifests/latest"),
        ("DELETE", "manifests/sha256:" + "0" * 64),
        ("GET", "blobs/sha256:" + "0" * 64),
        ("DELETE", "blobs/sha256:" + "0" * 64),
        ("POST", "blobs/uploads/"),
        ("GET", "blobs/uploads/some-upload"),
        ("GET", "tags/list"),
        ("GET", "referrers/sha256:" + "0" * 64),
    ],
)
def test_missing_repository(v2: httpx.Client, repo_name: str, method: str, path: str) -> None:
    config = {"mediaType": OCI_EMPTY, "digest": sha256(b"{}"), "size": 2}
    raw = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config}).encode()
    response = v2.request(
        method, f"/v2/{repo_name}/{path}", content=raw, headers={"Content-Type": OCI_MANIFEST}
    )
    assert response.status_code == 404
    if method != "HEAD":
        assert error_of(response) == (404, "NAME_UNKNOWN", not_found_message(repo_name))


def test_push_to_missing_repository_creates_nothing(
    v2: httpx.Client, ecr: Any, repo_name: str
) -> None:
    response = v2.post(
        f"/v2/{repo_name}/blobs/uploads/", params={"digest": sha256(b"x")}, content=b"x"
    )
    assert error_of(response) == (404, "NAME_UNKNOWN", not_found_message(repo_name))
    with pytest.raises(ClientError):
        ecr.describe_repositories(repositoryNames=[repo_name])


@pytest.mark.parametrize(
    "name", ["UPPER/case", "a", "trailing-/slash", "double//slash", "-leading", "x" * 257]
)
def test_invalid_repository_name(v2: httpx.Client, name: str) -> None:
    for path in ("manifests/latest", "tags/list", "blobs/uploads/"):
        method = "POST" if path.startswith("blobs/uploads") else "GET"
        response = v2.request(method, f"/v2/{name}/{path}")
        assert error_of(response)[:2] == (400, "NAME_INVALID"), path


def test_immutable_tags_refuse_overwrites(v2: httpx.Client, ecr: Any, repo_name: str) -> None:
    ecr.create_repository(repositoryName=repo_name, imageTagMutability="IMMUTABLE")
    raw, digest = push_image(v2, repo_name, "v1", seed="first")
    other = image_manifest(v2, repo_name, seed="second")
    response = put_manifest(v2, repo_name, "v1", other)
    assert error_of(response) == (
        400,
        "TAG_INVALID",
        f"The image tag 'v1' already exists in the '{repo_name}' repository and cannot be "
        "overwritten because the repository is immutable.",
    )
    assert put_manifest(v2, repo_name, "v1", raw).status_code == 201  # same bytes: a no-op
    assert put_manifest(v2, repo_name, "v2", other).status_code == 201  # a new tag is fine
    assert v2.get(f"/v2/{repo_name}/manifests/v1").headers["docker-content-digest"] == digest


def test_immutable_with_exclusions(v2: httpx.Client, ecr: Any, repo_name: str) -> None:
    ecr.create_repository(
        repositoryName=repo_name,
        imageTagMutability="IMMUTABLE_WITH_EXCLUSION",
        imageTagMutabilityExclusionFilters=[{"filterType": "WILDCARD", "filter": "latest"}],
    )
    for tag, status in (("latest", 201), ("v1", 400)):
        push_image(v2, repo_name, tag, seed="a")
        response = put_manifest(v2, repo_name, tag, image_manifest(v2, repo_name, seed="b"))
        assert response.status_code == status, tag


# --- tags and catalog ----------------------------------------------------------------------------


def test_tags_list_and_pagination(v2: httpx.Client, repo: str) -> None:
    raw, _ = push_image(v2, repo, "v1", seed="tags")
    wanted = ["Z", "a", "b", "latest", "v1", "v10", "v2"]
    for tag in wanted:
        assert put_manifest(v2, repo, tag, raw).status_code == 201
    everything = v2.get(f"/v2/{repo}/tags/list")
    assert everything.status_code == 200
    assert everything.json() == {"name": repo, "tags": sorted(wanted)}
    assert "link" not in everything.headers
    pages: list[list[str]] = []
    url: str | None = f"/v2/{repo}/tags/list?n=3"
    while url is not None:
        page = v2.get(url)
        pages.append(page.json()["tags"])
        link = page.headers.get("link")
        url = None
        if link is not None:
            assert link.endswith('>; rel="next"')
            url = link[1 : link.index(">")]
    assert pages == [["Z", "a", "b"], ["latest", "v1", "v10"], ["v2"]]
    assert v2.get(f"/v2/{repo}/tags/list", params={"last": "latest"}).json()["tags"] == [
        "v1",
        "v10",
        "v2",
    ]
    assert v2.get(f"/v2/{repo}/tags/list", params={"n": 2, "last": "b"}).json()["tags"] == [
        "latest",
        "v1",
    ]
    exact = v2.get(f"/v2/{repo}/tags/list", params={"n": 7})
    assert exact.json()["tags"] == sorted(wanted)
    assert "link" not in exact.headers


def test_tags_list_n_zero(v2: httpx.Client, repo: str) -> None:
    push_image(v2, repo, "v1", seed="zero")
    response = v2.get(f"/v2/{repo}/tags/list", params={"n": 0})
    assert response.json() == {"name": repo, "tags": []}
    assert "link" not in response.headers


@pytest.mark.parametrize("n", ["-1", "abc", "1.5", ""])
def test_tags_list_bad_n(v2: httpx.Client, repo: str, n: str) -> None:
    response = v2.get(f"/v2/{repo}/tags/list", params={"n": n})
    assert error_of(response)[:2] == (400, "PAGINATION_NUMBER_INVALID")


def test_tags_of_an_empty_repository(v2: httpx.Client, repo: str) -> None:
    assert v2.get(f"/v2/{repo}/tags/list").json() == {"name": repo, "tags": []}


def test_catalog(server: Server, v2: httpx.Client, ecr: Any) -> None:
    """In an account of its own (chosen by Host), so that the list is exactly known."""
    account = f"{uuid.uuid4().int % 10**12:012d}"
    host = {"Host": f"{account}.dkr.ecr.us-east-1.amazonaws.com:{server.port}"}
    names = ["alpha", "beta/one", "beta/two", "gamma", "zeta"]
    for name in names:
        ecr.create_repository(repositoryName=name, registryId=account)
    assert v2.get("/v2/_catalog", headers=host).json() == {"repositories": names}
    first = v2.get("/v2/_catalog", params={"n": 2}, headers=host)
    assert first.json() == {"repositories": ["alpha", "beta/one"]}
    assert first.headers["link"] == '</v2/_catalog?n=2&last=beta%2Fone>; rel="next"'
    second = v2.get(first.headers["link"][1 : first.headers["link"].index(">")], headers=host)
    assert second.json() == {"repositories": ["beta/two", "gamma"]}
    third = v2.get("/v2/_catalog", params={"n": 2, "last": "gamma"}, headers=host)
    assert third.json() == {"repositories": ["zeta"]}
    assert "link" not in third.headers
    empty = v2.get("/v2/_catalog", params={"n": 0}, headers=host)
    assert empty.json() == {"repositories": []}
    assert "link" not in empty.headers
    bad = v2.get("/v2/_catalog", params={"n": "many"}, headers=host)
    assert error_of(bad)[:2] == (400, "PAGINATION_NUMBER_INVALID")


# --- referrers -----------------------------------------------------------------------------------


def artifact(
    client: httpx.Client, repo: str, subject: tuple[bytes, str], artifact_type: str | None
) -> bytes:
    """An OCI artifact manifest (empty config) about ``subject``."""
    empty = push_blob(client, repo, b"{}")
    blob = f"payload {uuid.uuid4().hex}".encode()
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_MANIFEST}
    if artifact_type is not None:
        doc["artifactType"] = artifact_type
    doc["config"] = {
        "mediaType": OCI_EMPTY if artifact_type else "application/vnd.example.config.v1+json",
        "digest": empty,
        "size": 2,
    }
    doc["layers"] = [
        {
            "mediaType": "application/octet-stream",
            "digest": push_blob(client, repo, blob),
            "size": len(blob),
        }
    ]
    doc["subject"] = {"mediaType": OCI_MANIFEST, "digest": subject[1], "size": len(subject[0])}
    doc["annotations"] = {"org.example.kind": artifact_type or "config-typed"}
    return json.dumps(doc).encode()


def test_referrers(v2: httpx.Client, repo: str) -> None:
    subject = push_image(v2, repo, "v1", seed="subject")
    sbom = artifact(v2, repo, subject, "application/vnd.example.sbom.v1")
    signature = artifact(v2, repo, subject, None)
    for raw in (sbom, signature):
        response = put_manifest(v2, repo, sha256(raw), raw)
        assert response.status_code == 201
        assert response.headers["oci-subject"] == subject[1]
    listed = v2.get(f"/v2/{repo}/referrers/{subject[1]}")
    assert listed.status_code == 200
    assert listed.headers["content-type"] == OCI_INDEX
    assert "oci-filters-applied" not in listed.headers
    assert listed.json() == {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": sha256(sbom),
                "size": len(sbom),
                "artifactType": "application/vnd.example.sbom.v1",
                "annotations": {"org.example.kind": "application/vnd.example.sbom.v1"},
            },
            {
                "mediaType": OCI_MANIFEST,
                "digest": sha256(signature),
                "size": len(signature),
                "artifactType": "application/vnd.example.config.v1+json",
                "annotations": {"org.example.kind": "config-typed"},
            },
        ],
    }
    filtered = v2.get(
        f"/v2/{repo}/referrers/{subject[1]}",
        params={"artifactType": "application/vnd.example.sbom.v1"},
    )
    assert filtered.headers["oci-filters-applied"] == "artifactType"
    assert [m["digest"] for m in filtered.json()["manifests"]] == [sha256(sbom)]
    # deleting a referrer takes it off the list
    assert v2.delete(f"/v2/{repo}/manifests/{sha256(sbom)}").status_code == 202
    after = v2.get(f"/v2/{repo}/referrers/{subject[1]}").json()["manifests"]
    assert [m["digest"] for m in after] == [sha256(signature)]


def test_referrer_may_come_before_its_subject(v2: httpx.Client, repo: str) -> None:
    subject_raw = image_manifest(v2, repo, seed="later")
    subject = (subject_raw, sha256(subject_raw))
    raw = artifact(v2, repo, subject, "application/vnd.example.sig")
    response = put_manifest(v2, repo, "sig", raw)
    assert response.status_code == 201
    assert response.headers["oci-subject"] == subject[1]
    listed = v2.get(f"/v2/{repo}/referrers/{subject[1]}").json()["manifests"]
    assert [m["digest"] for m in listed] == [sha256(raw)]


def test_referrers_of_nothing(v2: httpx.Client, repo: str) -> None:
    response = v2.get(f"/v2/{repo}/referrers/{sha256(b'nobody refers to this')}")
    assert response.status_code == 200
    assert response.json() == {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}


def test_referrers_with_invalid_digest(v2: httpx.Client, repo: str) -> None:
    response = v2.get(f"/v2/{repo}/referrers/sha256:nothex")
    assert error_of(response)[:2] == (400, "DIGEST_INVALID")


# --- one core: ECR <-> OCI -----------------------------------------------------------------------


def test_image_pushed_over_v2_is_seen_by_the_ecr_api(v2: httpx.Client, ecr: Any, repo: str) -> None:
    raw, digest = push_image(v2, repo, "v1", seed="one-core", media_type=DOCKER_MANIFEST)
    got = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "v1"}])
    assert got["failures"] == []
    [image] = got["images"]
    assert image["imageManifest"].encode() == raw
    assert image["imageId"] == {"imageDigest": digest, "imageTag": "v1"}
    assert image["imageManifestMediaType"] == DOCKER_MANIFEST
    [detail] = ecr.describe_images(repositoryName=repo)["imageDetails"]
    assert detail["imageDigest"] == digest
    assert detail["imageTags"] == ["v1"]
    assert detail["imageManifestMediaType"] == DOCKER_MANIFEST
    layer_size = json.loads(raw)["layers"][0]["size"]
    assert detail["imageSizeInBytes"] == layer_size
    assert ecr.list_images(repositoryName=repo)["imageIds"] == [
        {"imageDigest": digest, "imageTag": "v1"}
    ]
    layers = [json.loads(raw)["config"]["digest"], json.loads(raw)["layers"][0]["digest"]]
    checked = ecr.batch_check_layer_availability(repositoryName=repo, layerDigests=layers)
    assert [x["layerAvailability"] for x in checked["layers"]] == ["AVAILABLE", "AVAILABLE"]
    assert checked["failures"] == []


def test_image_put_through_ecr_pulls_over_v2(v2: httpx.Client, ecr: Any, repo: str) -> None:
    manifest = make_image(ecr, repo, seed="from-ecr", layers=2)
    put = ecr.put_image(repositoryName=repo, imageManifest=manifest.decode(), imageTag="v1")
    digest = put["image"]["imageId"]["imageDigest"]
    assert digest == sha256(manifest)
    got = v2.get(f"/v2/{repo}/manifests/v1")
    assert got.content == manifest
    assert got.headers["docker-content-digest"] == digest
    assert got.headers["content-type"] == DOCKER_MANIFEST
    doc = json.loads(manifest)
    for descriptor in [doc["config"], *doc["layers"]]:
        blob = v2.get(f"/v2/{repo}/blobs/{descriptor['digest']}")
        assert blob.status_code == 200
        assert sha256(blob.content) == descriptor["digest"]
        assert len(blob.content) == descriptor["size"]
    assert v2.get(f"/v2/{repo}/tags/list").json() == {"name": repo, "tags": ["v1"]}


def test_ecr_and_oci_share_upload_sessions(v2: httpx.Client, ecr: Any, repo: str) -> None:
    """An upload started with InitiateLayerUpload continues and completes over /v2."""
    data = b"first part, second part"
    upload_id = ecr.initiate_layer_upload(repositoryName=repo)["uploadId"]
    ecr.upload_layer_part(
        repositoryName=repo,
        uploadId=upload_id,
        partFirstByte=0,
        partLastByte=10,
        layerPartBlob=data[:11],
    )
    status = v2.get(f"/v2/{repo}/blobs/uploads/{upload_id}")
    assert status.headers["range"] == "0-10"
    rest = v2.patch(
        f"/v2/{repo}/blobs/uploads/{upload_id}",
        content=data[11:],
        headers={"Content-Range": f"11-{len(data) - 1}"},
    )
    assert rest.status_code == 202
    done = v2.put(f"/v2/{repo}/blobs/uploads/{upload_id}", params={"digest": sha256(data)})
    assert done.status_code == 201
    checked = ecr.batch_check_layer_availability(repositoryName=repo, layerDigests=[sha256(data)])
    assert checked["layers"][0]["layerSize"] == len(data)


def test_layer_uploaded_through_ecr_is_a_blob(v2: httpx.Client, ecr: Any, repo: str) -> None:
    digest = upload_blob(ecr, repo, b"ecr layer")
    assert v2.get(f"/v2/{repo}/blobs/{digest}").content == b"ecr layer"


def test_delete_over_v2_is_seen_by_ecr(v2: httpx.Client, ecr: Any, repo: str) -> None:
    _, digest = push_image(v2, repo, "v1", seed="gone")
    assert v2.delete(f"/v2/{repo}/manifests/{digest}").status_code == 202
    got = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageDigest": digest}])
    assert got["images"] == []
    assert got["failures"][0]["failureCode"] == "ImageNotFound"


# --- create on push ------------------------------------------------------------------------------


def test_create_on_push(make_server: ServerFactory) -> None:
    server = make_server("--create-on-push", "--registry-host", "registry-{account}.example.test")
    with httpx.Client(base_url=server.endpoint) as client:
        raw, digest = push_image(client, "new/repo", "v1", seed="created")
        assert client.get("/v2/new/repo/manifests/v1").content == raw
        single = client.post(
            "/v2/other/repo/blobs/uploads/", params={"digest": sha256(b"x")}, content=b"x"
        )
        assert single.status_code == 201
        # an invalid push creates nothing
        invalid_manifest = put_manifest(client, "third/repo", "v1", b'{"schemaVersion": 2}')
        assert error_of(invalid_manifest)[:2] == (400, "MANIFEST_INVALID")
        invalid = client.post("/v2/Bad_Name/blobs/uploads/")
        assert error_of(invalid)[:2] == (400, "NAME_INVALID")
        assert error_of(client.get("/v2/never/pushed/tags/list"))[:2] == (404, "NAME_UNKNOWN")
    repos = server.client().describe_repositories()["repositories"]
    assert sorted(r["repositoryName"] for r in repos) == ["new/repo", "other/repo"]
    created = next(r for r in repos if r["repositoryName"] == "new/repo")
    assert created["imageTagMutability"] == "MUTABLE"
    images = server.client().list_images(repositoryName="new/repo")["imageIds"]
    assert images == [{"imageDigest": digest, "imageTag": "v1"}]
    # a Host that fits the --registry-host template names the account pushed to
    other = "333333333333"
    with httpx.Client(
        base_url=server.endpoint, headers={"Host": f"registry-{other}.example.test"}
    ) as client:
        push_image(client, "templated", "v1", seed="templated")
        assert client.get("/v2/templated/tags/list").json() == {"name": "templated", "tags": ["v1"]}
    repos = server.client().describe_repositories(registryId=other)["repositories"]
    assert [r["repositoryName"] for r in repos] == ["templated"]
    with httpx.Client(base_url=server.endpoint) as client:
        assert error_of(client.get("/v2/templated/tags/list"))[:2] == (404, "NAME_UNKNOWN")


def test_create_on_push_from_the_environment_survives_a_restart(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    server = make_server(env={"OPENECR_CREATE_ON_PUSH": "1"}, data_dir=tmp_path / "kept")
    with httpx.Client(base_url=server.endpoint) as client:
        raw, digest = push_image(client, "kept/repo", "v1", seed="restart")
    server.restart()
    with httpx.Client(base_url=server.endpoint) as client:
        assert client.get("/v2/kept/repo/manifests/v1").content == raw
        blob = json.loads(raw)["layers"][0]["digest"]
        assert sha256(client.get(f"/v2/kept/repo/blobs/{blob}").content) == blob
        assert client.get(f"/v2/kept/repo/manifests/{digest}").status_code == 200


# --- accounts: Host header, login -----------------------------------------------------------------


def test_host_header_selects_the_account(server: Server, v2: httpx.Client, ecr: Any) -> None:
    other = "210987654321"
    name = f"hosted/repo-{uuid.uuid4().hex[:8]}"
    ecr.create_repository(repositoryName=name, registryId=other)
    host = f"{other}.dkr.ecr.us-east-1.amazonaws.com:{server.port}"
    raw, digest = push_image_with_host(v2, name, host)
    got = v2.get(f"/v2/{name}/manifests/v1", headers={"Host": host})
    assert got.content == raw
    images = ecr.list_images(repositoryName=name, registryId=other)["imageIds"]
    assert images == [{"imageDigest": digest, "imageTag": "v1"}]
    default = v2.get(f"/v2/{name}/manifests/v1")
    assert error_of(default) == (404, "NAME_UNKNOWN", not_found_message(name))
    other_host = v2.get(
        f"/v2/{name}/manifests/v1", headers={"Host": "999999999999.dkr.ecr.us-east-1.x"}
    )
    assert error_of(other_host) == (404, "NAME_UNKNOWN", not_found_message(name, "999999999999"))


def push_image_with_host(client: httpx.Client, name: str, host: str) -> tuple[bytes, str]:
    headers = {"Host": host}
    blob = b"{}"
    started = client.post(f"/v2/{name}/blobs/uploads/", headers=headers)
    assert started.status_code == 202
    done = client.put(
        started.headers["location"], params={"digest": sha256(blob)}, content=blob, headers=headers
    )
    assert done.status_code == 201
    raw = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_EMPTY, "digest": sha256(blob), "size": 2},
            "layers": [],
        }
    ).encode()
    pushed = client.put(
        f"/v2/{name}/manifests/v1", content=raw, headers={**headers, "Content-Type": OCI_MANIFEST}
    )
    assert pushed.status_code == 201
    return raw, sha256(raw)


KEY_A, SECRET_A, ACCOUNT_A = ("AKIAOCIAPITESTKEYAAA", "oci-secret-a", "111111111111")
KEY_B, SECRET_B, ACCOUNT_B = ("AKIAOCIAPITESTKEYBBB", "oci-secret-b", "222222222222")


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("oci-auth")
    credentials = base / "credentials.toml"
    credentials.write_text(
        "".join(
            f'[[credentials]]\naccess_key_id = "{key}"\nsecret_access_key = "{secret}"\n'
            f'account_id = "{account}"\n\n'
            for key, secret, account in ((KEY_A, SECRET_A, ACCOUNT_A), (KEY_B, SECRET_B, ACCOUNT_B))
        )
    )
    server = InProcessServer(base / "data", free_port(), ["--credentials", str(credentials)])
    server.start()
    yield server
    server.stop()


def login(server: Server, key: str, secret: str) -> tuple[str, str]:
    """(user, password) from GetAuthorizationToken, as ``docker login`` gets them."""
    client = server.client(aws_access_key_id=key, aws_secret_access_key=secret)
    data = client.get_authorization_token()["authorizationData"][0]
    user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    return user, password


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def test_login_with_a_token(auth_server: Server) -> None:
    name = f"auth/repo-{uuid.uuid4().hex[:8]}"
    auth_server.client(aws_access_key_id=KEY_A, aws_secret_access_key=SECRET_A).create_repository(
        repositoryName=name
    )
    user, password = login(auth_server, KEY_A, SECRET_A)
    assert user == "AWS"
    with httpx.Client(base_url=auth_server.endpoint) as client:
        anonymous = client.get("/v2/")
        assert error_of(anonymous)[:2] == (401, "UNAUTHORIZED")
        challenge = anonymous.headers["www-authenticate"]
        assert challenge.startswith('Basic realm="http://127.0.0.1:')
        assert anonymous.headers["docker-distribution-api-version"] == "registry/2.0"
        assert error_of(client.get(f"/v2/{name}/tags/list"))[:2] == (401, "UNAUTHORIZED")
        client.headers.update(basic(user, password))
        assert client.get("/v2/").status_code == 200
        raw, digest = push_image(client, name, "v1", seed="authenticated")
        assert client.get(f"/v2/{name}/manifests/{digest}").content == raw
        assert client.get("/v2/_catalog").json()["repositories"] == [name]


def forged(password: str) -> str:
    version, payload, mac = password.split(".")
    return f"{version}.{payload}.{'A' * len(mac)}"


def expired(server: Server, account: str) -> str:
    secret = (server.data_dir / "secret.key").read_bytes()
    long_ago = datetime.now(UTC) - timedelta(hours=13)
    return TokenService(secret, clock=lambda: long_ago).issue(account).password


@pytest.mark.parametrize(
    "credentials",
    ["garbage", "forged", "expired", "wrong-user", "not-basic", "bad-base64", "no-colon"],
)
def test_bad_credentials_are_refused(auth_server: Server, credentials: str) -> None:
    _, password = login(auth_server, KEY_A, SECRET_A)
    headers = {
        "garbage": basic("AWS", "not-a-token"),
        "forged": basic("AWS", forged(password)),
        "expired": basic("AWS", expired(auth_server, ACCOUNT_A)),
        "wrong-user": basic("root", password),
        "not-basic": {"Authorization": f"Bearer {password}"},
        "bad-base64": {"Authorization": "Basic !!!"},
        "no-colon": {"Authorization": "Basic " + base64.b64encode(b"AWS").decode()},
    }[credentials]
    with httpx.Client(base_url=auth_server.endpoint) as client:
        response = client.get("/v2/", headers=headers)
        status, code, message = error_of(response)
        assert (status, code) == (401, "UNAUTHORIZED")
        assert response.headers["www-authenticate"].startswith("Basic realm=")
        if credentials == "expired":
            assert message == "Your authorization token has expired. Reauthenticate and try again."


def test_a_token_acts_in_its_own_account_only(auth_server: Server) -> None:
    name = f"auth/private-{uuid.uuid4().hex[:8]}"
    owner = auth_server.client(aws_access_key_id=KEY_B, aws_secret_access_key=SECRET_B)
    owner.create_repository(repositoryName=name)
    owner_headers = basic(*login(auth_server, KEY_B, SECRET_B))
    intruder_headers = basic(*login(auth_server, KEY_A, SECRET_A))
    host_b = f"{ACCOUNT_B}.dkr.ecr.us-east-1.amazonaws.com:{auth_server.port}"
    with httpx.Client(base_url=auth_server.endpoint, headers=owner_headers) as pusher:
        raw, _ = push_image(pusher, name, "v1")
    with httpx.Client(base_url=auth_server.endpoint) as client:
        # the owner, addressing its registry by Host or not
        for headers in (owner_headers, {**owner_headers, "Host": host_b}):
            assert client.get(f"/v2/{name}/manifests/v1", headers=headers).content == raw
        # account A's token on account B's registry: denied, on every kind of request
        intruder = {**intruder_headers, "Host": host_b}
        assert client.get("/v2/", headers=intruder).status_code == 200  # the token is valid
        for method, path in (
            ("GET", f"/v2/{name}/manifests/v1"),
            ("PUT", f"/v2/{name}/manifests/v2"),
            ("DELETE", f"/v2/{name}/manifests/v1"),
            ("GET", f"/v2/{name}/blobs/{sha256(b'x')}"),
            ("POST", f"/v2/{name}/blobs/uploads/"),
            ("GET", f"/v2/{name}/tags/list"),
            ("GET", f"/v2/{name}/referrers/{sha256(b'x')}"),
            ("GET", "/v2/_catalog"),
        ):
            response = client.request(method, path, headers=intruder, content=raw)
            status, code, message = error_of(response)
            assert (status, code) == (403, "DENIED"), path
            assert message.startswith(f"User: arn:aws:iam::{ACCOUNT_A}:root is not authorized")
        # without a Host naming B, A's token looks in A's own registry, where nothing is
        response = client.get(f"/v2/{name}/manifests/v1", headers=intruder_headers)
        assert error_of(response) == (404, "NAME_UNKNOWN", not_found_message(name, ACCOUNT_A))
    assert owner.list_images(repositoryName=name)["imageIds"][0]["imageTag"] == "v1"


def test_anonymous_access_without_credentials(v2: httpx.Client, repo: str) -> None:
    """Without --credentials the Authorization header is not even looked at."""
    raw, _ = push_image(v2, repo, "v1", seed="anonymous")
    response = v2.get(f"/v2/{repo}/manifests/v1", headers=basic("AWS", "anything"))
    assert response.content == raw


def test_the_realm_names_the_host_the_client_used(auth_server: Server) -> None:
    host = f"{ACCOUNT_A}.dkr.ecr.us-east-1.amazonaws.com"
    with httpx.Client(base_url=auth_server.endpoint) as client:
        response = client.get("/v2/", headers={"Host": host})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == (
        f'Basic realm="http://{host}/",service="ecr.amazonaws.com"'
    )
