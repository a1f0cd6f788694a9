"""Hostile and malformed requests with raw HTTP: every answer is a 4xx ECR error document, nothing
is stored, and the server keeps serving."""

from __future__ import annotations

import base64
import json
import re
import select
import socket
from collections.abc import Iterator
from typing import Any

import botocore.session
import httpx
import pytest

from conftest import InProcessServer, Server, free_port, make_image

PREFIX = "AmazonEC2ContainerRegistry_V20150921"
CONTENT_TYPE = "application/x-amz-json-1.1"
LIMIT = 32 * 1024 * 1024
MODEL = botocore.session.get_session().get_service_model("ecr")


_CLIENTS: list[httpx.Client] = []


@pytest.fixture(scope="module", autouse=True)
def _one_http_client() -> Iterator[None]:
    """One connection pool for the module: a client per request costs more than the request."""
    with httpx.Client(timeout=30) as client:
        _CLIENTS.append(client)
        yield
        _CLIENTS.clear()


def http() -> httpx.Client:
    return _CLIENTS[0]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server of its own, holding one repository, so that "nothing was stored" is exact."""
    server = InProcessServer(tmp_path_factory.mktemp("hostile") / "data", free_port()).start()
    server.client().create_repository(repositoryName="hostile/base")
    yield server
    server.stop()


def post(server: Server, body: bytes, target: str | None, **headers: str) -> httpx.Response:
    sent = {"Content-Type": CONTENT_TYPE, **headers}
    if target is not None:
        sent["X-Amz-Target"] = target
    return http().post(server.endpoint + "/", content=body, headers=sent)


def call(server: Server, operation: str, params: Any) -> httpx.Response:
    return post(server, json.dumps(params).encode(), f"{PREFIX}.{operation}")


def assert_error(response: httpx.Response, ecr_type: str, status: int = 400) -> str:
    """The response is an ECR error document of this type; return its message."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == CONTENT_TYPE
    doc = response.json()
    assert set(doc) == {"__type", "message"}
    assert doc["__type"] == ecr_type
    assert isinstance(doc["message"], str) and doc["message"]
    assert response.headers["x-amzn-requestid"]
    return str(doc["message"])


def repositories(server: Server) -> list[str]:
    response = call(server, "DescribeRepositories", {"maxResults": 1000})
    assert response.status_code == 200
    return sorted(r["repositoryName"] for r in response.json()["repositories"])


def state(server: Server) -> Any:
    return repositories(server), images(server), resource_tags(server)


@pytest.fixture(scope="module")
def baseline(hostile: Server) -> Any:
    return state(hostile)


@pytest.fixture
def unchanged(hostile: Server, baseline: Any) -> Iterator[Server]:
    """The test may throw anything at the server: afterwards it must hold the same repositories,
    images and tags as when the module started, and still answer."""
    yield hostile
    assert state(hostile) == baseline
    assert http().get(hostile.endpoint + "/openecr/health").status_code == 200


def images(server: Server) -> Any:
    return call(server, "ListImages", {"repositoryName": "hostile/base"}).json()


def resource_tags(server: Server) -> Any:
    arn = "arn:aws:ecr:us-east-1:123456789012:repository/hostile/base"
    return call(server, "ListTagsForResource", {"resourceArn": arn}).json()


# --- the envelope --------------------------------------------------------------------------------

MALFORMED_BODIES = [
    b'{"repositoryName": ',
    b"{'repositoryName': 'single-quotes'}",
    b"[]",
    b'["repositoryName", "x"]',
    b'"a string"',
    b"123",
    b"null",
    b"true",
    b"\xff\xfe\x00{",
    b'{"repositoryName": "x"} trailing',
    b"[" * 100_000 + b"]" * 100_000,
    b'{"repositoryName": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    b"\x00" * 100,
]


@pytest.mark.parametrize("body", MALFORMED_BODIES, ids=lambda b: repr(b[:24]))
def test_malformed_bodies(unchanged: Server, body: bytes) -> None:
    answer = post(unchanged, body, f"{PREFIX}.CreateRepository")
    assert_error(answer, "SerializationException")
    message = answer.json()["message"]
    assert "not valid" in message or "must be a JSON object" in message, message


def test_a_malformed_body_is_told_apart_from_a_wrong_shape(unchanged: Server) -> None:
    broken = post(unchanged, b'{"repositoryName": ', f"{PREFIX}.CreateRepository").json()
    assert broken["message"].startswith("The request body is not valid JSON: Expecting value")
    listed = post(unchanged, b"[]", f"{PREFIX}.CreateRepository").json()
    assert listed["message"] == "The request body must be a JSON object"


WRONG_TYPES = [
    ("CreateRepository", {"repositoryName": {"a": 1}}),
    ("CreateRepository", {"repositoryName": ["hostile/x"]}),
    ("CreateRepository", {"repositoryName": 12}),
    ("CreateRepository", {"repositoryName": "hostile/x", "tags": {"Key": "a", "Value": "b"}}),
    ("CreateRepository", {"repositoryName": "hostile/x", "tags": [{"Key": 1, "Value": "b"}]}),
    ("CreateRepository", {"repositoryName": "hostile/x", "tags": ["a=b"]}),
    ("CreateRepository", {"repositoryName": "hostile/x", "imageScanningConfiguration": []}),
    (
        "CreateRepository",
        {"repositoryName": "hostile/x", "imageScanningConfiguration": {"scanOnPush": "yes"}},
    ),
    ("DescribeRepositories", {"maxResults": "10"}),
    ("DescribeRepositories", {"maxResults": 1.5}),
    ("DescribeRepositories", {"maxResults": True}),
    ("DescribeRepositories", {"maxResults": 1e999}),
    ("DescribeRepositories", {"repositoryNames": "hostile/base"}),
    ("DescribeRepositories", {"nextToken": 5}),
    ("DeleteRepository", {"repositoryName": "hostile/base", "force": "true"}),
    ("DeleteRepository", {"repositoryName": "hostile/base", "force": 1}),
    ("ListImages", {"repositoryName": "hostile/base", "filter": "TAGGED"}),
    ("ListImages", {"repositoryName": "hostile/base", "filter": {"tagStatus": 1}}),
    (
        "UploadLayerPart",
        {
            "repositoryName": "hostile/base",
            "uploadId": "00000000-0000-0000-0000-000000000000",
            "partFirstByte": 0,
            "partLastByte": 2,
            "layerPartBlob": "!!!not base64!!!",
        },
    ),
    (
        "UploadLayerPart",
        {
            "repositoryName": "hostile/base",
            "uploadId": "00000000-0000-0000-0000-000000000000",
            "partFirstByte": 0,
            "partLastByte": 2,
            "layerPartBlob": 12345,
        },
    ),
    (
        "UploadLayerPart",
        {
            "repositoryName": "hostile/base",
            "uploadId": "00000000-0000-0000-0000-000000000000",
            "partFirstByte": "0",
            "partLastByte": 2,
            "layerPartBlob": "YWJj",
        },
    ),
    ("BatchCheckLayerAvailability", {"repositoryName": "hostile/base", "layerDigests": "sha"}),
    ("PutImage", {"repositoryName": "hostile/base", "imageManifest": {"schemaVersion": 2}}),
    ("BatchGetImage", {"repositoryName": "hostile/base", "imageIds": [{"imageTag": 1}]}),
    ("TagResource", {"resourceArn": ["arn"], "tags": []}),
]


@pytest.mark.parametrize(("operation", "params"), WRONG_TYPES)
def test_wrong_types(unchanged: Server, operation: str, params: dict[str, Any]) -> None:
    assert_error(call(unchanged, operation, params), "SerializationException")


@pytest.mark.parametrize(
    ("operation", "params", "field"),
    [
        ("CreateRepository", {}, "repositoryName"),
        ("CreateRepository", {"repositoryName": None}, "repositoryName"),
        ("DeleteRepository", {"force": True}, "repositoryName"),
        ("UploadLayerPart", {"repositoryName": "hostile/base"}, "uploadId"),
        ("TagResource", {"tags": []}, "resourceArn"),
    ],
)
def test_missing_required_members(
    unchanged: Server, operation: str, params: dict[str, Any], field: str
) -> None:
    message = assert_error(call(unchanged, operation, params), "InvalidParameterException")
    assert (
        message
        == f"Invalid parameter at '{field}' failed to satisfy constraint: 'Member must not be null'"
    )


def test_an_empty_body_is_an_empty_request(unchanged: Server) -> None:
    message = assert_error(
        post(unchanged, b"", f"{PREFIX}.CreateRepository"), "InvalidParameterException"
    )
    assert "'repositoryName'" in message
    listed = post(unchanged, b"", f"{PREFIX}.DescribeRepositories")
    assert listed.status_code == 200
    assert listed.headers["content-type"] == CONTENT_TYPE


@pytest.mark.parametrize(
    "target",
    [
        None,
        "",
        "DynamoDB_20120810.ListTables",
        "AmazonEC2ContainerRegistry_V20150921",
        f"{PREFIX}.",
        f"{PREFIX}.NoSuchOperation",
        f"{PREFIX}.createRepository",
        f"{PREFIX.lower()}.CreateRepository",
        f"{PREFIX}.CreateRepository.Extra",
        f"{PREFIX}.__init__",
        f"{PREFIX}.../../etc/passwd",
        "x" * 10_000,
    ],
)
def test_unknown_targets(unchanged: Server, target: str | None) -> None:
    body = json.dumps({"repositoryName": "hostile/created"}).encode()
    assert_error(post(unchanged, body, target), "UnknownOperationException")


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_other_methods_on_the_ecr_endpoint(unchanged: Server, method: str) -> None:
    response = http().request(method, unchanged.endpoint + "/", content=b"{}")
    message = assert_error(response, "UnknownOperationException", 405)
    assert message == f"The method {method} is not supported on /"
    assert response.headers["allow"] == "POST"


def test_head_on_the_ecr_endpoint(unchanged: Server) -> None:
    response = http().head(unchanged.endpoint + "/")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.content == b""


def test_every_operation_of_the_model_is_served(unchanged: Server) -> None:
    """No operation of botocore's ECR model answers UnknownOperationException: each is routed
    (a body that is not a JSON object gets SerializationException, and nothing is stored)."""
    from openecr.api.ecr.operations import OPERATIONS

    assert sorted(set(MODEL.operation_names) - set(OPERATIONS)) == []
    for operation in sorted(MODEL.operation_names):
        response = post(unchanged, b"[]", f"{PREFIX}.{operation}")
        assert_error(response, "SerializationException")


# --- size limits ---------------------------------------------------------------------------------


def _raw_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Read one HTTP/1.1 response with a Content-Length from a raw socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    length = int(headers["content-length"])
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk
        body += chunk
    return status, headers, body


def _request_head(server: Server, framing: str) -> bytes:
    return (
        f"POST / HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        f"X-Amz-Target: {PREFIX}.CreateRepository\r\nContent-Type: {CONTENT_TYPE}\r\n"
        f"{framing}\r\n\r\n"
    ).encode()


def _assert_too_large(status: int, headers: dict[str, str], body: bytes) -> None:
    assert status == 413
    assert headers["content-type"] == CONTENT_TYPE
    doc = json.loads(body)
    assert set(doc) == {"__type", "message"}
    assert str(LIMIT) in doc["message"]


def test_declared_oversized_body_is_refused_before_it_is_sent(unchanged: Server) -> None:
    # Only the head and a few bytes go out: a server that waited for the declared body would
    # never answer, and the socket timeout would fail the test.
    with socket.create_connection(("127.0.0.1", unchanged.port), timeout=20) as sock:
        sock.sendall(_request_head(unchanged, f"Content-Length: {LIMIT + 1}"))
        sock.sendall(b'{"repositoryName": "hostile/too-large", "x": "')
        _assert_too_large(*_raw_response(sock))


def test_declared_body_at_the_limit_is_read(unchanged: Server) -> None:
    body = b'{"repositoryName": "x", "pad": "' + b"p" * (LIMIT - 40)
    body += b" " * (LIMIT - len(body) - 2) + b'"}'
    assert len(body) == LIMIT
    response = post(unchanged, body, f"{PREFIX}.CreateRepository")
    message = assert_error(response, "InvalidParameterException")
    assert "'repositoryName'" in message


def test_chunked_body_growing_past_the_limit_is_cut_off(unchanged: Server) -> None:
    chunk = b"x" * (1024 * 1024)
    framed = b"%x\r\n" % len(chunk) + chunk + b"\r\n"
    with socket.create_connection(("127.0.0.1", unchanged.port), timeout=20) as sock:
        sock.sendall(_request_head(unchanged, "Transfer-Encoding: chunked"))
        sock.sendall(b'4\r\n{"a"\r\n')
        sent = 0
        # keep streaming until the server answers; it must do so soon after the limit
        while not select.select([sock], [], [], 0)[0]:
            assert sent <= 2 * LIMIT, "the server read far past its limit without answering"
            try:
                sock.sendall(framed)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        assert sent >= LIMIT
        _assert_too_large(*_raw_response(sock))


# --- hostile values ------------------------------------------------------------------------------

HOSTILE_NAMES = [
    "../../etc",
    "..",
    "a/../b",
    "./ab",
    "%2e%2e/etc",
    "ab\u0000cd",
    "ab\ncd",
    "x" * 257,
    "x" * 100_000,
    "r\u00e9po",
    "\u0440\u0435\u0440\u043e",  # Cyrillic look-alikes of "repo"
    "repo\u200b",
    "ab\ud800",
    "/etc/passwd",
    "ab\\cd",
    "ab cd",
    "AB",
    "",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=lambda n: repr(n[:16]))
@pytest.mark.parametrize(
    ("operation", "extra"),
    [
        ("CreateRepository", {}),
        ("DeleteRepository", {"force": True}),
        ("DescribeImages", {}),
        ("ListImages", {}),
        ("InitiateLayerUpload", {}),
        ("PutImageTagMutability", {"imageTagMutability": "MUTABLE"}),
        ("GetDownloadUrlForLayer", {"layerDigest": "sha256:" + "a" * 64}),
    ],
)
def test_hostile_repository_names(
    unchanged: Server, operation: str, extra: dict[str, Any], name: str
) -> None:
    response = call(unchanged, operation, {"repositoryName": name, **extra})
    expected = "SerializationException" if "\ud800" in name else "InvalidParameterException"
    message = assert_error(response, expected)
    assert "repositoryName" in message


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=lambda n: repr(n[:16]))
def test_hostile_names_in_a_list(unchanged: Server, name: str) -> None:
    response = call(unchanged, "DescribeRepositories", {"repositoryNames": ["hostile/base", name]})
    expected = "SerializationException" if "\ud800" in name else "InvalidParameterException"
    assert_error(response, expected)


HOSTILE_TAGS = [
    {"Key": "k\u0000", "Value": "v"},
    {"Key": "k", "Value": "v\u0000"},
    {"Key": "k\r\nSet-Cookie: x", "Value": "v"},
    {"Key": "k" * 100_000, "Value": "v"},
    {"Key": "k", "Value": "v" * 100_000},
    {"Key": "<script>", "Value": "v"},
    {"Key": "aws:system", "Value": "v"},
]


@pytest.mark.parametrize("tag", HOSTILE_TAGS, ids=lambda t: repr(str(t)[:24]))
def test_hostile_resource_tags(unchanged: Server, tag: dict[str, str]) -> None:
    arn = "arn:aws:ecr:us-east-1:123456789012:repository/hostile/base"
    response = call(unchanged, "TagResource", {"resourceArn": arn, "tags": [tag]})
    assert_error(response, "InvalidTagParameterException")
    response = call(unchanged, "CreateRepository", {"repositoryName": "hostile/t", "tags": [tag]})
    assert_error(response, "InvalidTagParameterException")


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:ecr:us-east-1:123456789012:repository/../../etc",
        "arn:aws:ecr:us-east-1:123456789012:repository/hostile/base\u0000",
        "arn:aws:ecr:us-east-1:123456789012:repository/" + "x" * 100_000,
        "\u0000",
        "arn:aws:ecr:us-east-1:123456789012:repository/hostile/base\nx",
    ],
    ids=lambda a: repr(a[-16:]),
)
def test_hostile_arns(unchanged: Server, arn: str) -> None:
    response = call(unchanged, "ListTagsForResource", {"resourceArn": arn})
    assert_error(response, "InvalidParameterException")


@pytest.fixture(scope="module")
def valid_manifest(hostile: Server) -> str:
    """A manifest whose config and layer are uploaded to hostile/base: PutImage would store it,
    so a refusal is about the other parameters only. Uploaded blobs are no part of ``state``."""
    return make_image(hostile.client(), "hostile/base", seed="hostile tags").decode()


@pytest.mark.parametrize(
    "tag",
    ["../latest", "v1\u0000", "t" * 301, "t" * 100_000, "\u00fcber", "a b", "a/b", ""],
    ids=lambda t: repr(t[:16]),
)
def test_hostile_image_tags(unchanged: Server, valid_manifest: str, tag: str) -> None:
    response = call(
        unchanged,
        "PutImage",
        {"repositoryName": "hostile/base", "imageManifest": valid_manifest, "imageTag": tag},
    )
    message = assert_error(response, "InvalidParameterException")
    assert "'imageTag'" in message


@pytest.mark.parametrize(
    "upload_id",
    [
        "../../etc/passwd",
        "00000000-0000-0000-0000-000000000000/../../x",
        "\u0000",
        "0" * 100_000,
        "00000000-0000-0000-0000-00000000000\u0000",
        "",
        ".",
    ],
    ids=lambda u: repr(u[:16]),
)
@pytest.mark.parametrize("operation", ["UploadLayerPart", "CompleteLayerUpload"])
def test_hostile_upload_ids(unchanged: Server, operation: str, upload_id: str) -> None:
    params: dict[str, Any] = {"repositoryName": "hostile/base", "uploadId": upload_id}
    if operation == "UploadLayerPart":
        params.update(partFirstByte=0, partLastByte=2, layerPartBlob="YWJj")
    else:
        params["layerDigests"] = ["sha256:" + "a" * 64]
    message = assert_error(call(unchanged, operation, params), "InvalidParameterException")
    assert "uploadId" in message


@pytest.mark.parametrize(
    ("field", "value", "ecr_type"),
    [
        ("partFirstByte", "-1", "InvalidParameterException"),
        ("partLastByte", "-1", "InvalidParameterException"),
        ("partFirstByte", str(2**70), "InvalidLayerPartException"),
        ("partLastByte", str(2**63), "InvalidLayerPartException"),
        ("partLastByte", "9" * 5000, "SerializationException"),
    ],
)
def test_out_of_range_part_bytes(unchanged: Server, field: str, value: str, ecr_type: str) -> None:
    start = call(unchanged, "InitiateLayerUpload", {"repositoryName": "hostile/base"})
    upload_id = start.json()["uploadId"]
    params = {
        "repositoryName": "hostile/base",
        "uploadId": upload_id,
        "partFirstByte": 0,
        "partLastByte": 2,
        "layerPartBlob": base64.b64encode(b"abc").decode(),
    }
    body = json.dumps(params)[:-1] + f', "{field}": {value}}}'  # raw JSON; the last key wins
    response = post(unchanged, body.encode(), f"{PREFIX}.UploadLayerPart")
    assert_error(response, ecr_type)
    # nothing was received: the upload still starts at byte 0
    assert call(unchanged, "UploadLayerPart", params).json()["lastByteReceived"] == 2


def test_registry_ids(unchanged: Server) -> None:
    for registry_id in ("../../etc", "12345678901a", "1234567890123", "", "\u0000" * 12):
        response = call(unchanged, "DescribeRepositories", {"registryId": registry_id})
        message = assert_error(response, "InvalidParameterException")
        assert "registryId" in message


# --- never a server fault, whatever the member holds ---------------------------------------------

ODD_VALUES: list[Any] = [
    None,
    0,
    -1,
    2**64,
    1.5,
    True,
    "",
    "x" * 300,
    "\u0000",
    "../../etc",
    [],
    [None],
    {},
    {"a": [1]},
]


def _members() -> list[tuple[str, str]]:
    from openecr.api.ecr.operations import OPERATIONS

    found = []
    for operation in sorted(OPERATIONS):
        shape = MODEL.operation_model(operation).input_shape
        for member in shape.members if shape is not None else ():
            found.append((operation, member))
    return found


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A throwaway server: some odd requests may well succeed and change things."""
    server = InProcessServer(tmp_path_factory.mktemp("fuzzed") / "data", free_port()).start()
    server.client().create_repository(repositoryName="fuzz/base")
    yield server
    server.stop()


@pytest.mark.parametrize(("operation", "member"), _members())
def test_no_member_value_causes_a_server_fault(fuzzed: Server, operation: str, member: str) -> None:
    base = {
        "repositoryName": "fuzz/base",
        "uploadId": "00000000-0000-0000-0000-000000000000",
        "resourceArn": "arn:aws:ecr:us-east-1:123456789012:repository/fuzz/base",
    }
    with httpx.Client(base_url=fuzzed.endpoint, timeout=30) as client:
        for value in ODD_VALUES:
            body = json.dumps({**base, member: value}).encode()
            headers = {"X-Amz-Target": f"{PREFIX}.{operation}", "Content-Type": CONTENT_TYPE}
            response = client.post("/", content=body, headers=headers)
            assert response.status_code < 500, (value, response.text)
            assert response.headers["content-type"] == CONTENT_TYPE
            if response.status_code >= 400:
                assert set(response.json()) == {"__type", "message"}
    assert http().get(fuzzed.endpoint + "/openecr/health").status_code == 200


# --- other paths and methods ---------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/nope",
        "/../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/openecr",
        "/openecr/health/x",
        "/openecr/layers",
        "/openecr/layers/123456789012/hostile/base/sha256:" + "a" * 64,
        "/openecr/layers/123456789012/hostile/base/../../../secret.key",
        "/openecr/layers/123456789012/hostile/base/nope?expires=99999999999999999999&signature=x",
        "/openecr/layers/x/y/z?expires=-1&signature=%00",
        "/" + "a" * 8000,
    ],
)
def test_other_paths_never_fault(unchanged: Server, method: str, path: str) -> None:
    with socket.create_connection(("127.0.0.1", unchanged.port), timeout=20) as sock:
        # raw, so that the client does not normalise the path
        sock.sendall(
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    assert 200 <= status < 500, data[:200]
    if path.startswith("/openecr/layers") and method == "GET":
        assert status in (403, 404)
    assert (unchanged.data_dir / "secret.key").read_bytes() not in data
    assert not re.search(rb"Traceback|File \"", data)
