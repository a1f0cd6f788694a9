"""Property-based fuzzing (hypothesis) of both APIs: ECR JSON requests built from botocore's
model with values of every JSON type, and /v2 requests with arbitrary methods, paths, headers
and bodies. Whatever comes in: never a 500, and every error in its protocol's format (ECR:
``__type`` and ``message``; /v2: an ``errors`` list of ``code``/``message``)."""

from __future__ import annotations

import json
import string
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import InProcessServer, Server, free_port
from openecr.api.ecr.operations import OPERATIONS
from openecr.api.ecr.validation import service_model

PREFIX = "AmazonEC2ContainerRegistry_V20150921"
CONTENT_TYPE = "application/x-amz-json-1.1"
DIGEST = "sha256:" + "ab" * 32
FUZZ = settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    database=None,
)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A throwaway server with one repository and one image: fuzzed requests may change it."""
    server = InProcessServer(tmp_path_factory.mktemp("fuzz") / "data", free_port()).start()
    server.client().create_repository(repositoryName="fuzz/base")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=60) as client:
        yield client


names = st.sampled_from(["fuzz/base", "fuzz/other", "", "a" * 300, "UPPER", "x/../y", "é"])
texts = st.one_of(names, st.text(max_size=40), st.sampled_from([DIGEST, "latest", "v1"]))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    texts,
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def ecr_requests(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    operation = draw(st.sampled_from(sorted(OPERATIONS)))
    shape = service_model().operation_model(operation).input_shape
    members = list(shape.members) if shape is not None else []
    chosen = draw(st.lists(st.sampled_from(members), unique=True)) if members else []
    params = {member: draw(values) for member in chosen}
    if draw(st.booleans()) and "repositoryName" in members:
        params["repositoryName"] = "fuzz/base"
    return operation, params


@given(request=ecr_requests())
@FUZZ
def test_ecr_requests_never_fault(target: Server, http: httpx.Client, request: Any) -> None:
    operation, params = request
    response = http.post(
        target.endpoint + "/",
        content=json.dumps(params).encode(),
        headers={"Content-Type": CONTENT_TYPE, "X-Amz-Target": f"{PREFIX}.{operation}"},
    )
    assert response.status_code < 500 or response.status_code == 507, response.text
    if response.status_code >= 400:
        assert set(response.json()) == {"__type", "message"}, response.text


@given(body=st.binary(max_size=200), operation=st.sampled_from(sorted(OPERATIONS)))
@FUZZ
def test_ecr_bodies_never_fault(
    target: Server, http: httpx.Client, body: bytes, operation: str
) -> None:
    response = http.post(
        target.endpoint + "/",
        content=body,
        headers={"Content-Type": CONTENT_TYPE, "X-Amz-Target": f"{PREFIX}.{operation}"},
    )
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert set(response.json()) == {"__type", "message"}, response.text


segment = st.one_of(
    st.sampled_from(["fuzz", "base", "blobs", "manifests", "uploads", "tags", "list"]),
    st.sampled_from(["referrers", DIGEST, "latest", "sha256:zz", "..", "%2f", "%00", ""]),
    st.text(alphabet=string.ascii_letters + string.digits + "-._~%:@", max_size=20),
    st.text(max_size=8).map(lambda t: quote(t, safe="")),
)
v2_paths = st.lists(segment, max_size=7).map(lambda parts: "/v2/" + "/".join(parts))
header_values = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60)
v2_headers = st.dictionaries(
    st.sampled_from(
        ["Content-Type", "Content-Range", "Range", "Accept", "Authorization", "Content-Length"]
    ),
    st.one_of(
        header_values,
        st.sampled_from(["bytes=0-", "0-", "bytes=5-2", "0-99999999999999999999", "Basic !!"]),
    ),
    max_size=3,
)
queries = st.dictionaries(
    st.sampled_from(["digest", "mount", "from", "n", "last", "artifactType"]),
    st.one_of(st.text(max_size=20), st.sampled_from([DIGEST, "-1", "99999999999999999999"])),
    max_size=3,
)


@given(
    method=st.sampled_from(["GET", "HEAD", "PUT", "POST", "PATCH", "DELETE"]),
    path=v2_paths,
    headers=v2_headers,
    query=queries,
    body=st.binary(max_size=64),
)
@FUZZ
def test_v2_requests_never_fault(
    target: Server,
    http: httpx.Client,
    method: str,
    path: str,
    headers: dict[str, str],
    query: dict[str, str],
    body: bytes,
) -> None:
    headers = {k: v for k, v in headers.items() if k != "Content-Length"}
    try:
        response = http.request(
            method,
            target.endpoint + path,
            params=query,
            headers=headers,
            content=body if method in ("PUT", "POST", "PATCH") else None,
        )
    except httpx.LocalProtocolError:  # a header httpx itself refuses to send
        return
    assert response.status_code < 500 or response.status_code == 507, response.text
    on_v2 = response.url.path.startswith("/v2")  # the client may normalise "/v2/.." away
    if response.status_code >= 400 and method != "HEAD" and response.content and on_v2:
        doc = response.json()
        assert isinstance(doc.get("errors"), list) and doc["errors"], response.text
        for error in doc["errors"]:
            assert isinstance(error["code"], str) and isinstance(error["message"], str)
    assert http.get(target.endpoint + "/openecr/health").status_code == 200
