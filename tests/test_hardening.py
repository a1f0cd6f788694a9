"""Input that used to escape as a 500 or do the wrong thing: non-ASCII signatures, encoded
slashes in /v2 names, unbounded echoes of client input."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from conftest import Server, ServerFactory, upload_blob
from test_auth import write_credentials


def test_a_download_url_with_a_non_ascii_signature_is_refused(
    server: Server, ecr: Any, repo: str
) -> None:
    digest = upload_blob(ecr, repo, b"layer bytes")
    url = ecr.get_download_url_for_layer(repositoryName=repo, layerDigest=digest)["downloadUrl"]
    assert httpx.get(url).status_code == 200
    forged = url[:-3] + "%C3%A9"
    answer = httpx.get(forged)
    assert answer.status_code == 403
    assert answer.json()["__type"] == "AccessDeniedException"
    parts = urlsplit(url)
    surrogate = f"{parts.scheme}://{parts.netloc}{parts.path}?{parts.query[:-3]}%ED%A0%80"
    assert httpx.get(surrogate).status_code == 403


def test_a_registry_token_with_a_non_ascii_signature_is_refused(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    server = make_server("--credentials", str(write_credentials(tmp_path)))
    for password in (
        "oe1.eyJhIjoiMTExMTExMTExMTExIiwiZSI6OTk5OTk5OTk5OX0.é",
        "oe1.é.é",
        "é",
    ):
        basic = base64.b64encode(f"AWS:{password}".encode()).decode()
        answer = httpx.get(f"{server.endpoint}/v2/", headers={"Authorization": f"Basic {basic}"})
        assert answer.status_code == 401
        assert answer.json()["errors"][0]["code"] == "UNAUTHORIZED"


def test_an_encoded_slash_in_a_v2_name_is_refused(server: Server, ecr: Any) -> None:
    ecr.create_repository(repositoryName="fz/repo")
    manifest = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'
    config = b"{}"
    digest = upload_blob(ecr, "fz/repo", config)
    manifest += (
        b'"config":{"mediaType":"application/vnd.oci.image.config.v1+json","size":2,"digest":"'
        + digest.encode()
        + b'"},"layers":[]}'
    )
    headers = {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}
    put = httpx.put(f"{server.endpoint}/v2/fz/repo/manifests/v1", content=manifest, headers=headers)
    assert put.status_code == 201
    for method in ("DELETE", "GET", "PUT"):
        for encoded in ("fz%2frepo", "fz%2Frepo"):
            answer = httpx.request(
                method,
                f"{server.endpoint}/v2/{encoded}/manifests/v1",
                content=manifest if method == "PUT" else None,
                headers=headers,
            )
            assert answer.status_code == 400, (method, encoded)
            assert answer.json()["errors"][0]["code"] == "NAME_INVALID"
    assert httpx.get(f"{server.endpoint}/v2/fz/repo/manifests/v1").status_code == 200


def test_error_messages_echo_a_bounded_piece_of_the_input(server: Server, ecr: Any) -> None:
    ecr.create_repository(repositoryName="echo")
    long_tag = "t" * 10_000
    answer = httpx.get(f"{server.endpoint}/v2/echo/manifests/{long_tag}-!")
    [error] = answer.json()["errors"]
    assert error["code"] == "TAG_INVALID"
    assert len(error["message"]) < 400 and "(10002 characters)" in error["message"]
    bad_digest = "sha256:" + "z" * 5_000
    answer = httpx.get(f"{server.endpoint}/v2/echo/blobs/{bad_digest}")
    [error] = answer.json()["errors"]
    assert error["code"] == "DIGEST_INVALID" and len(error["message"]) < 400
    short = "sha256:" + hashlib.sha256(b"x").hexdigest()[:10]
    answer = httpx.get(f"{server.endpoint}/v2/echo/blobs/{short}")
    assert f"'{short}'" in answer.json()["errors"][0]["message"]  # short values come back whole
