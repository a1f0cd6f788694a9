"""The HTTP upstream backend's logins, against a scripted registry (httpx's MockTransport):
the Bearer token flow (anonymous and with Basic credentials at the realm, tokens reused per
scope), a Basic challenge, and what each refusal becomes."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from openecr.backends.upstream_http import HttpUpstream, parse_challenge
from openecr.ports.upstream import UpstreamEndpoint, UpstreamFailure, UpstreamProblem

MANIFEST = b'{"schemaVersion": 2}'
BASE = "https://upstream.test"


class Registry:
    """A registry that wants a Bearer token from its realm (``basic``: Basic credentials)."""

    def __init__(self, *, basic: bool = False, user: str | None = None) -> None:
        self.basic = basic
        self.user = user  # the credentials the realm (or Basic) requires; None: anonymous
        self.token_requests: list[httpx.Request] = []
        self.requests: list[httpx.Request] = []

    def _basic_ok(self, request: httpx.Request) -> bool:
        if self.user is None:
            return True
        expected = "Basic " + base64.b64encode(f"{self.user}:pw".encode()).decode()
        return request.headers.get("authorization") == expected

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            self.token_requests.append(request)
            if not self._basic_ok(request):
                return httpx.Response(401)
            scope = request.url.params.get("scope", "")
            return httpx.Response(200, json={"token": f"T<{scope}>", "expires_in": 300})
        self.requests.append(request)
        given = request.headers.get("authorization", "")
        if self.basic:
            if self._basic_ok(request) and given:
                return self._answer(request)
            return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="r"'})
        path = request.url.path.removeprefix("/v2/")
        repository = path.rsplit("/manifests/", 1)[0].rsplit("/blobs/", 1)[0] if path else ""
        scope = f"repository:{repository}:pull" if repository else ""
        if given == f"Bearer T<{scope}>":
            return self._answer(request)
        challenge = f'Bearer realm="{BASE}/token",service="upstream.test"'
        if scope:
            challenge += f',scope="{scope}"'
        return httpx.Response(401, headers={"WWW-Authenticate": challenge})

    def _answer(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v2/":
            return httpx.Response(200, json={})
        if "/manifests/" in request.url.path:
            return httpx.Response(
                200,
                content=MANIFEST,
                headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
            )
        return httpx.Response(404, json={"errors": [{"code": "BLOB_UNKNOWN"}]})


def client(registry: Registry, user: str | None = None) -> HttpUpstream:
    endpoint = UpstreamEndpoint(BASE, user, "pw" if user else None)
    return HttpUpstream(endpoint, transport=httpx.MockTransport(registry))


def test_parse_challenge() -> None:
    assert parse_challenge('Bearer realm="https://a/t",service="s",scope="x:y:pull"') == (
        "bearer",
        {"realm": "https://a/t", "service": "s", "scope": "x:y:pull"},
    )
    assert parse_challenge('Basic realm="r"') == ("basic", {"realm": "r"})


def test_anonymous_bearer_tokens_are_fetched_once_per_scope() -> None:
    registry = Registry()
    upstream = client(registry)
    for _ in range(3):
        got = upstream.manifest("library/alpine", "latest", ["application/json"])
        assert got.body == MANIFEST
    assert len(registry.token_requests) == 1
    request = registry.token_requests[0]
    assert request.url.params["scope"] == "repository:library/alpine:pull"
    assert request.url.params["service"] == "upstream.test"
    assert "authorization" not in request.headers
    upstream.manifest("other", "v1", [])
    assert len(registry.token_requests) == 2


def test_bearer_realm_gets_the_secret_as_basic_credentials() -> None:
    registry = Registry(user="alice")
    client(registry, "alice").check()
    assert registry.token_requests[-1].headers["authorization"].startswith("Basic ")
    with pytest.raises(UpstreamFailure) as refused:
        client(registry, "mallory").manifest("app", "v1", [])
    assert refused.value.problem is UpstreamProblem.DENIED
    with pytest.raises(UpstreamFailure) as anonymous:
        client(registry).check()
    assert anonymous.value.problem is UpstreamProblem.DENIED


def test_basic_challenge() -> None:
    registry = Registry(basic=True, user="bob")
    assert client(registry, "bob").manifest("app", "v1", []).body == MANIFEST
    with pytest.raises(UpstreamFailure) as refused:
        client(registry).check()
    assert refused.value.problem is UpstreamProblem.DENIED
    assert "requires credentials" in refused.value.message


@pytest.mark.parametrize(
    ("status", "problem"),
    [
        (404, UpstreamProblem.NOT_FOUND),
        (403, UpstreamProblem.DENIED),
        (429, UpstreamProblem.THROTTLED),
        (503, UpstreamProblem.UNAVAILABLE),
    ],
)
def test_statuses(status: int, problem: UpstreamProblem) -> None:
    upstream = HttpUpstream(
        UpstreamEndpoint(BASE),
        transport=httpx.MockTransport(lambda _r: httpx.Response(status, content=json.dumps({}))),
    )
    with pytest.raises(UpstreamFailure) as failed:
        upstream.blob("app", "sha256:" + "0" * 64)
    assert failed.value.problem is problem


def test_unreachable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    upstream = HttpUpstream(UpstreamEndpoint(BASE), transport=httpx.MockTransport(refuse))
    with pytest.raises(UpstreamFailure) as failed:
        upstream.check()
    assert failed.value.problem is UpstreamProblem.UNAVAILABLE
