"""Minimal clients for loading data and checking answers: the ECR JSON API and ``/v2``."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from bench.common import AUTHORIZATION, ECR_CONTENT_TYPE, ECR_TARGET, BenchError, MiB


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def ecr_headers(operation: str) -> dict[str, str]:
    return {
        "Content-Type": ECR_CONTENT_TYPE,
        "X-Amz-Target": ECR_TARGET + operation,
        "Authorization": AUTHORIZATION,
    }


def put_image_input(repository: str, manifest: bytes, tag: str, media_type: str) -> dict[str, str]:
    """The body of a PutImage call that tags ``manifest`` in ``repository``."""
    return {
        "repositoryName": repository,
        "imageManifest": manifest.decode(),
        "imageManifestMediaType": media_type,
        "imageTag": tag,
    }


class Ecr:
    """The ECR JSON API over one keep-alive connection."""

    def __init__(self, endpoint: str) -> None:
        self.client = httpx.Client(base_url=endpoint, timeout=120)

    def close(self) -> None:
        self.client.close()

    @classmethod
    def make_repository(cls, endpoint: str, repository: str, blobs: Iterable[bytes]) -> None:
        """Create ``repository`` on the server at ``endpoint`` and upload ``blobs`` into it."""
        ecr = cls(endpoint)
        try:
            ecr.create_repository(repository)
            for blob in blobs:
                ecr.upload_blob(repository, blob)
        finally:
            ecr.close()

    def call(self, operation: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.client.post("/", content=json.dumps(body), headers=ecr_headers(operation))
        if response.status_code != 200:
            raise BenchError(f"{operation}: {response.status_code} {response.text[:500]}")
        result: dict[str, Any] = response.json()
        return result

    def create_repository(self, name: str) -> None:
        self.call("CreateRepository", {"repositoryName": name})

    def upload_blob(self, repository: str, data: bytes) -> str:
        digest = sha256(data)
        upload = self.call("InitiateLayerUpload", {"repositoryName": repository})["uploadId"]
        self.call(
            "UploadLayerPart",
            {
                "repositoryName": repository,
                "uploadId": upload,
                "partFirstByte": 0,
                "partLastByte": len(data) - 1,
                "layerPartBlob": base64.b64encode(data).decode(),
            },
        )
        self.call(
            "CompleteLayerUpload",
            {"repositoryName": repository, "uploadId": upload, "layerDigests": [digest]},
        )
        return digest

    def put_image(self, repository: str, manifest: bytes, tag: str, media_type: str) -> None:
        self.call("PutImage", put_image_input(repository, manifest, tag, media_type))

    def batch_get_image(self, body: bytes) -> dict[str, Any]:
        response = self.client.post("/", content=body, headers=ecr_headers("BatchGetImage"))
        if response.status_code != 200:
            raise BenchError(f"BatchGetImage: {response.status_code} {response.text[:500]}")
        result: dict[str, Any] = response.json()
        return result


class Puts:
    """PutImage and nothing else, over one keep-alive connection with the standard library's
    HTTP client: a loader's client costs a fraction of httpx's CPU time per call (the bench
    shares its 2 CPUs with the server it loads, so a heavy client slows the load)."""

    def __init__(self, endpoint: str) -> None:
        where = urlsplit(endpoint)
        self.connection = http.client.HTTPConnection(
            where.hostname or "127.0.0.1", where.port, timeout=120
        )
        self.headers = ecr_headers("PutImage")

    def close(self) -> None:
        self.connection.close()

    def put_image(self, repository: str, manifest: bytes, tag: str, media_type: str) -> None:
        body = json.dumps(put_image_input(repository, manifest, tag, media_type)).encode()
        self.connection.request("POST", "/", body, self.headers)
        response = self.connection.getresponse()
        answer = response.read()
        if response.status != 200:
            raise BenchError(f"PutImage: {response.status} {answer[:500]!r}")


class V2:
    """The OCI Distribution API (no authentication: every server runs open)."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.client = httpx.Client(base_url=endpoint, timeout=600)

    def close(self) -> None:
        self.client.close()

    def start_upload(self, repository: str) -> str:
        response = self.client.post(f"/v2/{repository}/blobs/uploads/")
        if response.status_code != 202:
            raise BenchError(f"start upload: {response.status_code} {response.text[:500]}")
        return urljoin(self.endpoint + "/", response.headers["location"])

    def finish(self, location: str, digest: str, body: bytes = b"") -> None:
        separator = "&" if "?" in location else "?"
        response = self.client.put(
            f"{location}{separator}digest={digest}",
            content=body,
            headers={"Content-Type": "application/octet-stream"},
        )
        if response.status_code != 201:
            raise BenchError(f"finish upload: {response.status_code} {response.text[:500]}")

    def push_blob(self, repository: str, data: bytes) -> str:
        """POST then PUT with the bytes: the monolithic upload every registry takes."""
        digest = sha256(data)
        self.finish(self.start_upload(repository), digest, data)
        return digest

    def patch(self, location: str, chunks: Iterable[bytes]) -> str:
        """One PATCH whose body streams (chunked transfer coding), as docker and skopeo
        upload a layer; returns where the upload goes on."""
        response = self.client.patch(
            location,
            content=iter(chunks),
            headers={"Content-Type": "application/octet-stream"},
        )
        if response.status_code != 202:
            raise BenchError(f"PATCH: {response.status_code} {response.text[:500]}")
        return urljoin(self.endpoint + "/", response.headers["location"])

    def download(self, repository: str, digest: str) -> Iterator[bytes]:
        with self.client.stream("GET", f"/v2/{repository}/blobs/{digest}") as response:
            if response.status_code != 200:
                raise BenchError(f"GET blob: {response.status_code}")
            yield from response.iter_raw(MiB)

    def put_manifest(self, repository: str, reference: str, body: bytes, media_type: str) -> str:
        response = self.client.put(
            f"/v2/{repository}/manifests/{reference}",
            content=body,
            headers={"Content-Type": media_type},
        )
        if response.status_code != 201:
            raise BenchError(f"PUT manifest: {response.status_code} {response.text[:500]}")
        return sha256(body)

    def get(self, path: str, method: str = "GET", accept: str = "*/*") -> httpx.Response:
        return self.client.request(method, path, headers={"Accept": accept})
