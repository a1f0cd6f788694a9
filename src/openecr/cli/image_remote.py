"""The images of a registry served by openecr (or any ECR-compatible registry), for
``openecr image export|import --endpoint-url URL``.

The ECR API (signed with the CLI's credentials, as ``openecr <ecr command>`` resolves them)
checks the repository and issues a token (``GetAuthorizationToken``); manifests and blobs then
travel over ``/v2`` with that token as ``AWS``'s Basic password, streamed both ways: uploads as
POST, one streamed PATCH and a PUT with ``?digest=`` (as docker pushes), downloads as GETs that
follow a blob store's redirect. ``--registry-id`` selects another account's registry with a
``Host`` of the form ``<account>.dkr.ecr.<region>.<endpoint host>``, as clients of ECR name it."""

from __future__ import annotations

import base64
import hashlib
import ssl
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import httpx

ACCEPT = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        "application/vnd.docker.distribution.manifest.v1+json",
    )
)


class RemoteError(Exception):
    """A refusal of the server, with its message."""


def _error_text(response: httpx.Response) -> str:
    try:
        errors = response.json().get("errors") or []
    except ValueError:
        errors = []
    if errors:
        first = errors[0]
        return f"{first.get('code', '')}: {first.get('message', '')}".strip(": ")
    return f"HTTP {response.status_code}"


class RemoteStore:
    """One registry of a server: the same methods as the local ``Store``."""

    def __init__(
        self,
        ecr: Any,
        endpoint: str,
        region: str,
        verify: bool | str,
        registry_id: str | None,
    ) -> None:
        self.ecr = ecr
        self.endpoint = endpoint.rstrip("/")
        self.registry_id = registry_id
        data = ecr.get_authorization_token()["authorizationData"][0]
        user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
        headers = {}
        if registry_id is not None:
            netloc = urlsplit(self.endpoint).netloc
            headers["Host"] = f"{registry_id}.dkr.ecr.{region}.{netloc}"
        tls = ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify
        self.http = httpx.Client(
            auth=httpx.BasicAuth(user, password),
            headers=headers,
            verify=tls,
            timeout=httpx.Timeout(120, connect=10),
            follow_redirects=True,
        )

    def close(self) -> None:
        self.http.close()

    def _url(self, name: str, kind: str, reference: str) -> str:
        return f"{self.endpoint}/v2/{name}/{kind}/{quote(reference, safe=':')}"

    def _check(self, response: httpx.Response, what: str, *ok: int) -> httpx.Response:
        if response.status_code not in ok:
            response.read()
            raise RemoteError(f"{what}: {_error_text(response)}")
        return response

    def manifest(self, name: str, tag: str | None, digest: str | None) -> tuple[bytes, str, str]:
        reference = digest or tag or "latest"
        response = self.http.get(
            self._url(name, "manifests", reference), headers={"Accept": ACCEPT}
        )
        if response.status_code == 404:
            raise RemoteError(f"{name}:{reference}: Requested image not found")
        self._check(response, f"GET manifest {name}:{reference}", 200)
        raw = response.content
        media_type = response.headers.get("content-type", "").split(";")[0].strip()
        found = response.headers.get("docker-content-digest") or _sha256(raw)
        return raw, media_type, digest or found

    def blob(self, name: str, digest: str) -> Iterator[bytes]:
        with self.http.stream("GET", self._url(name, "blobs", digest)) as response:
            self._check(response, f"GET blob {digest}", 200)
            yield from response.iter_bytes(1 << 20)

    def has_blob(self, name: str, digest: str) -> bool:
        response = self.http.head(self._url(name, "blobs", digest))
        return self._check(response, f"HEAD blob {digest}", 200, 404).status_code == 200

    def put_blob(self, name: str, digest: str, chunks: Iterator[bytes]) -> None:
        started = self._check(
            self.http.post(f"{self.endpoint}/v2/{name}/blobs/uploads/"), "start an upload", 202
        )
        location = urljoin(self.endpoint + "/", started.headers["location"])
        patched = self._check(
            self.http.patch(
                location,
                content=chunks,
                headers={"Content-Type": "application/octet-stream"},
            ),
            f"upload {digest}",
            202,
        )
        location = urljoin(self.endpoint + "/", patched.headers["location"])
        self._check(self.http.put(location, params={"digest": digest}), f"complete {digest}", 201)

    def put_manifest(self, name: str, raw: bytes, media_type: str, tag: str | None) -> str:
        reference = tag or _sha256(raw)
        response = self.http.put(
            self._url(name, "manifests", reference),
            content=raw,
            headers={"Content-Type": media_type},
        )
        self._check(response, f"PUT manifest {name}:{reference}", 201)
        return response.headers.get("docker-content-digest") or _sha256(raw)

    def require_repository(self, name: str) -> None:
        """Through ``/v2`` (``tags/list?n=1``), which a repository policy can open to another
        account, unlike DescribeRepositories on ECR (a registry-wide resource)."""
        response = self.http.get(f"{self.endpoint}/v2/{name}/tags/list", params={"n": "1"})
        if response.status_code == 404:
            raise RemoteError(f"the repository {name} does not exist: {_error_text(response)}")
        self._check(response, f"repository {name}", 200)


def _sha256(raw: bytes) -> str:
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def open_remote(
    endpoint: str,
    profile: str | None,
    region: str | None,
    ca_bundle: str | None,
    verify_ssl: bool,
    registry_id: str | None,
) -> RemoteStore:
    """A :class:`RemoteStore` with the credentials and region ``openecr <ecr command>`` would
    use (the default chain without the instance-metadata probe, else the dummy key)."""
    import os

    import botocore.session

    from openecr.cli.ecr import DEFAULT_REGION, _fallback_credentials

    session = botocore.session.Session(profile=profile)
    resolver = session.get_component("credential_provider")
    if any(p.METHOD == "iam-role" for p in resolver.providers):
        resolver.remove("iam-role")
    resolver.providers.append(_fallback_credentials())
    region = (
        region
        or session.get_config_variable("region")
        or os.environ.get("OPENECR_REGION")
        or DEFAULT_REGION
    )
    verify: bool | str = ca_bundle or session.get_config_variable("ca_bundle") or True
    if not verify_ssl:
        verify = False
    ecr = session.create_client("ecr", region_name=region, endpoint_url=endpoint, verify=verify)
    return RemoteStore(ecr, endpoint, region, verify, registry_id)


def configured(profile: str | None) -> str | None:
    """The ECR endpoint configured in the environment or the profile, if any."""
    import botocore.session

    from openecr.cli.ecr import configured_endpoint

    return configured_endpoint(botocore.session.Session(profile=profile))
