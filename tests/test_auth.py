"""Authentication of the ECR JSON API: ``openecr serve --credentials FILE`` checks SigV4.

Every request goes to a real server through a real client: boto3, the ``aws`` CLI, or httpx
carrying a request that botocore signed (to reach the cases an SDK never produces).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import botocore.auth
import httpx
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from conftest import VENV_BIN, InProcessServer, Server, ServerFactory, free_port

KEY_A, SECRET_A, ACCOUNT_A = (
    "AKIAOPENECRKEYAAAAAA",
    "secret/a+AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    "111111111111",
)
KEY_B, SECRET_B, ACCOUNT_B = (
    "AKIAOPENECRKEYBBBBBB",
    "secret/b+BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB",
    "222222222222",
)
TARGET = "AmazonEC2ContainerRegistry_V20150921."
MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)
UNKNOWN_KEY = "The security token included in the request is invalid."

CREDENTIALS_TOML = f"""
[[credentials]]
access_key_id = "{KEY_A}"
secret_access_key = "{SECRET_A}"
account_id = "{ACCOUNT_A}"

[[credentials]]
access_key_id = "{KEY_B}"
secret_access_key = "{SECRET_B}"
account_id = "{ACCOUNT_B}"
"""


def write_credentials(directory: Path) -> Path:
    path = directory / "credentials.toml"
    path.write_text(CREDENTIALS_TOML)
    return path


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server with two keys in two accounts, shared by the tests that only read or
    create uniquely named repositories (``make_server`` is per test; starting a server per
    error case would cost a second each)."""
    base = tmp_path_factory.mktemp("auth")
    server = InProcessServer(
        base / "data", free_port(), ["--credentials", str(write_credentials(base))]
    )
    server.start()
    yield server
    server.stop()


def client(server: Server, key: str, secret: str, **kwargs: Any) -> Any:
    return server.client(aws_access_key_id=key, aws_secret_access_key=secret, **kwargs)


def error_of(call: Callable[..., Any], **params: Any) -> tuple[str, str, int]:
    with pytest.raises(ClientError) as info:
        call(**params)
    error = info.value.response["Error"]
    status = info.value.response["ResponseMetadata"]["HTTPStatusCode"]
    return error["Code"], error["Message"], status


# --- raw requests signed by botocore -------------------------------------------------------------


def signed_headers(
    server: Server,
    body: bytes,
    operation: str = "DescribeRepositories",
    *,
    key: str = KEY_A,
    secret: str = SECRET_A,
    region: str = "us-east-1",
    service: str = "ecr",
    when: datetime | None = None,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """Headers of a request botocore's SigV4 signer signed at ``when`` (default: now)."""
    headers = {
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": TARGET + operation,
        **(extra or {}),
    }
    request = AWSRequest(method="POST", url=server.endpoint + "/", headers=headers, data=body)
    signer = botocore.auth.SigV4Auth(Credentials(key, secret), service, region)
    moment = (when or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None)
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=moment):
        signer.add_auth(request)
    return dict(request.headers.items())


def post(server: Server, headers: Mapping[str, str | bytes], body: bytes) -> httpx.Response:
    return httpx.post(server.endpoint + "/", headers=headers, content=body, timeout=30)


def drop_signed(header: str, name: str) -> str:
    """An Authorization header whose SignedHeaders no longer lists ``name``."""
    head, _, rest = header.partition("SignedHeaders=")
    names, _, tail = rest.partition(",")
    kept = ";".join(n for n in names.split(";") if n != name)
    return f"{head}SignedHeaders={kept},{tail}"


BODY = b"{}"
Built = tuple[dict[str, Any], bytes]


def _tampered_body(server: Server) -> Built:
    return signed_headers(server, BODY), b'{"maxResults": 1}'


def _stale(server: Server) -> Built:
    return signed_headers(server, BODY, when=datetime.now(UTC) - timedelta(minutes=20)), BODY


def _future(server: Server) -> Built:
    return signed_headers(server, BODY, when=datetime.now(UTC) + timedelta(minutes=20)), BODY


def _region(server: Server) -> Built:
    return signed_headers(server, BODY, region="mars-north-1"), BODY


def _service(server: Server) -> Built:
    return signed_headers(server, BODY, service="s3"), BODY


def _scope_date(server: Server) -> Built:
    headers = signed_headers(server, BODY)
    day = headers["X-Amz-Date"][:8]
    headers["Authorization"] = headers["Authorization"].replace(f"/{day}/", "/20200101/")
    return headers, BODY


def _content_sha(server: Server) -> Built:
    extra = {"X-Amz-Content-SHA256": "0" * 64}
    return signed_headers(server, BODY, extra=extra), BODY


def _unsigned_payload(server: Server) -> Built:
    return signed_headers(server, BODY, extra={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"}), BODY


def _host_unsigned(server: Server) -> Built:
    headers = signed_headers(server, BODY)
    headers["Authorization"] = drop_signed(headers["Authorization"], "host")
    return headers, BODY


def _target_unsigned(server: Server) -> Built:
    headers = signed_headers(server, BODY)
    headers["Authorization"] = drop_signed(headers["Authorization"], "x-amz-target")
    return headers, BODY


def _other_target(server: Server) -> Built:
    headers = signed_headers(server, BODY)
    headers["X-Amz-Target"] = TARGET + "DeleteRepository"
    return headers, BODY


def _signed_header_absent(server: Server) -> Built:
    headers = signed_headers(server, BODY, extra={"X-Custom": "1"})
    del headers["X-Custom"]
    return headers, BODY


def _raw(authorization: str | None, date: bool = True) -> Callable[[Server], Built]:
    """A hand-written Authorization header; ``{day}`` becomes today's date (UTC)."""

    def build(_server: Server) -> Built:
        now = datetime.now(UTC)
        headers: dict[str, Any] = {"X-Amz-Target": TARGET + "DescribeRepositories"}
        if authorization is not None:
            # bytes: httpx sends them as they are, even when not ASCII
            headers["Authorization"] = authorization.replace("{day}", f"{now:%Y%m%d}").encode()
        if date:
            headers["X-Amz-Date"] = now.strftime("%Y%m%dT%H%M%SZ")
        return headers, BODY

    return build


SCOPE = KEY_A + "/{day}/us-east-1/ecr/aws4_request"
FULL = f"AWS4-HMAC-SHA256 Credential={SCOPE}, SignedHeaders=host;x-amz-date, Signature={'0' * 64}"

REJECTED = [
    # (id, request builder, HTTP status, __type, message or its start)
    ("no-auth-header", _raw(None), 403, "MissingAuthenticationTokenException",
     "Missing Authentication Token"),
    ("empty-auth-header", _raw(""), 403, "MissingAuthenticationTokenException",
     "Missing Authentication Token"),
    ("single-token", _raw("garbage"), 400, "IncompleteSignatureException",
     "Authorization header requires 'Credential' parameter. Authorization header requires "
     "'Signature' parameter. Authorization header requires 'SignedHeaders' parameter. "
     "Authorization=garbage"),
    ("bearer", _raw("Bearer abc.def"), 400, "IncompleteSignatureException",
     "'abc.def' not a valid key=value pair (missing equal-sign) in Authorization header: "
     "'Bearer abc.def'."),
    ("basic", _raw("Basic QUJDOkRFRg==", date=False), 400, "IncompleteSignatureException",
     "Authorization header requires 'Credential' parameter. Authorization header requires "
     "'Signature' parameter. Authorization header requires 'SignedHeaders' parameter. "
     "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. "
     "Authorization=Basic QUJDOkRFRg=="),
    ("no-date", _raw(FULL, date=False), 400, "IncompleteSignatureException",
     "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. "
     f"Authorization=AWS4-HMAC-SHA256 Credential={KEY_A}/"),
    ("short-credential", _raw(FULL.replace(SCOPE, KEY_A + "/{day}")), 400,
     "IncompleteSignatureException",
     "Credential must have exactly 5 slash-delimited elements, e.g. "
     f"keyid/date/region/service/term, got '{KEY_A}/"),
    ("other-algorithm", _raw(FULL.replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA512")), 400,
     "IncompleteSignatureException", "Unsupported AWS 'algorithm': 'AWS4-HMAC-SHA512'."),
    ("host-unsigned", _host_unsigned, 400, "IncompleteSignatureException",
     "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."),
    ("unknown-key", _raw(FULL.replace(KEY_A, "AKIANOSUCHKEY0000000")), 400,
     "UnrecognizedClientException", UNKNOWN_KEY),
    ("stale", _stale, 400, "InvalidSignatureException", "Signature expired: "),
    ("future", _future, 400, "InvalidSignatureException", "Signature not yet current: "),
    ("region", _region, 400, "InvalidSignatureException",
     "Credential should be scoped to a valid region, not 'mars-north-1'."),
    ("service", _service, 400, "InvalidSignatureException",
     "Credential should be scoped to correct service: 'ecr'."),
    ("terminator", _raw(FULL.replace("aws4_request", "aws5_request")), 400,
     "InvalidSignatureException",
     "Credential should be scoped with a valid terminator: 'aws4_request', not 'aws5_request'."),
    ("scope-date", _scope_date, 400, "InvalidSignatureException",
     "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
     "'20200101' != "),
    ("bad-x-amz-date", lambda s: ({**_raw(FULL)(s)[0], "X-Amz-Date": "2024-01-01"}, BODY), 400,
     "IncompleteSignatureException", "Date must be in ISO-8601 'basic format'. Got '2024-01-01'."),
    ("zero-signature", _raw(FULL), 400, "InvalidSignatureException", MISMATCH),
    ("tampered-body", _tampered_body, 400, "InvalidSignatureException", MISMATCH),
    ("other-target", _other_target, 400, "InvalidSignatureException", MISMATCH),
    ("target-dropped-from-signed", _target_unsigned, 400, "InvalidSignatureException", MISMATCH),
    ("signed-header-absent", _signed_header_absent, 400, "InvalidSignatureException", MISMATCH),
    ("content-sha-mismatch", _content_sha, 400, "InvalidSignatureException",
     "The provided 'x-amz-content-sha256' header does not match what was computed."),
    ("unsigned-payload", _unsigned_payload, 400, "InvalidSignatureException",
     "The provided 'x-amz-content-sha256' header does not match what was computed."),
    ("non-ascii-signature", _raw(FULL.replace("Signature=0", "Signature=\u00e9")), 400,
     "InvalidSignatureException", MISMATCH),
]  # fmt: skip


@pytest.mark.parametrize(
    ("build", "status", "error_type", "message"),
    [pytest.param(*case[1:], id=case[0]) for case in REJECTED],
)
def test_rejected_requests(
    auth_server: Server,
    build: Callable[[Server], Built],
    status: int,
    error_type: str,
    message: str,
) -> None:
    headers, body = build(auth_server)
    response = post(auth_server, headers, body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/x-amz-json-1.1"
    doc = response.json()
    assert doc["__type"] == error_type
    assert doc["message"].startswith(message), doc["message"]


def test_expired_message_names_the_window(auth_server: Server) -> None:
    when = datetime.now(UTC) - timedelta(hours=1)
    headers = signed_headers(auth_server, BODY, when=when)
    message = post(auth_server, headers, BODY).json()["message"]
    stamp = when.strftime("%Y%m%dT%H%M%SZ")
    prefix, _, window = message.partition(" is now earlier than ")
    assert prefix == f"Signature expired: {stamp}"
    earliest, now = window.removesuffix(" - 15 min.)").split(" (")
    assert datetime.strptime(now, "%Y%m%dT%H%M%SZ") - datetime.strptime(
        earliest, "%Y%m%dT%H%M%SZ"
    ) == timedelta(minutes=15)


ACCEPTED = [
    # what Go SDKs sign besides the usual headers
    ("go-sdk-headers", {"Content-Length": "2", "X-Amz-Security-Token": "session-token"}),
    ("content-sha256", {"X-Amz-Content-SHA256": hashlib.sha256(BODY).hexdigest()}),
    ("date-header", {"Date": "Thu, 01 Jan 1970 00:00:00 GMT"}),  # botocore replaces the value
    ("spaces-in-a-signed-value", {"X-Custom": "a   b"}),
]


@pytest.mark.parametrize("extra", [pytest.param(e, id=i) for i, e in ACCEPTED])
def test_any_signed_header_set_is_accepted(auth_server: Server, extra: dict[str, str]) -> None:
    headers = signed_headers(auth_server, BODY, extra=extra)
    signed = headers["Authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    assert {name.lower() for name in extra} <= set(signed)
    response = post(auth_server, headers, BODY)
    assert response.status_code == 200, response.text
    assert "repositories" in response.json()


def test_clock_skew_within_fifteen_minutes_is_accepted(auth_server: Server) -> None:
    for minutes in (-10, 10):
        when = datetime.now(UTC) + timedelta(minutes=minutes)
        response = post(auth_server, signed_headers(auth_server, BODY, when=when), BODY)
        assert response.status_code == 200, response.text


def test_large_signed_body(auth_server: Server) -> None:
    """A layer part (a few MiB, base64 in JSON) is signed and checked like any body."""
    repo = f"auth/big-{uuid.uuid4().hex[:8]}"
    ecr = client(auth_server, KEY_A, SECRET_A)
    ecr.create_repository(repositoryName=repo)
    upload = ecr.initiate_layer_upload(repositoryName=repo)
    part = os.urandom(3 * 1024 * 1024)
    done = ecr.upload_layer_part(
        repositoryName=repo,
        uploadId=upload["uploadId"],
        partFirstByte=0,
        partLastByte=len(part) - 1,
        layerPartBlob=part,
    )
    assert done["lastByteReceived"] == len(part) - 1
    assert done["registryId"] == ACCOUNT_A


# --- boto3 ---------------------------------------------------------------------------------------


def test_each_key_acts_in_its_own_account(make_server: ServerFactory, tmp_path: Path) -> None:
    server = make_server("--credentials", str(write_credentials(tmp_path)))
    a, b = client(server, KEY_A, SECRET_A), client(server, KEY_B, SECRET_B)
    for ecr, account, names in ((a, ACCOUNT_A, ["app/web", "only-a"]), (b, ACCOUNT_B, ["app/web"])):
        for name in names:
            repo = ecr.create_repository(repositoryName=name)["repository"]
            assert repo["registryId"] == account
            assert repo["repositoryArn"] == f"arn:aws:ecr:us-east-1:{account}:repository/{name}"
            assert repo["repositoryUri"] == f"127.0.0.1:{server.port}/{name}"
    seen_a = a.describe_repositories()["repositories"]
    seen_b = b.describe_repositories()["repositories"]
    assert sorted(r["repositoryName"] for r in seen_a) == ["app/web", "only-a"]
    assert {r["registryId"] for r in seen_a} == {ACCOUNT_A}
    assert [r["repositoryName"] for r in seen_b] == ["app/web"]
    assert seen_b[0]["registryId"] == ACCOUNT_B
    # naming one's own account explicitly is fine
    own = a.describe_repositories(registryId=ACCOUNT_A)["repositories"]
    assert len(own) == 2
    # B cannot see A's repository by name: it is looked up in B's registry
    code, message, _ = error_of(b.describe_repositories, repositoryNames=["only-a"])
    assert code == "RepositoryNotFoundException"
    assert f"registry with id '{ACCOUNT_B}'" in message


CROSS_ACCOUNT = [
    ("describe_repositories", {"registryId": ACCOUNT_B}, "DescribeRepositories", "*"),
    (
        "describe_repositories",
        {"registryId": ACCOUNT_B, "repositoryNames": ["app/web"]},
        "DescribeRepositories",
        "*",
    ),
    ("create_repository", {"registryId": ACCOUNT_B, "repositoryName": "x/y"}, "CreateRepository",
     "x/y"),
    ("list_images", {"registryId": ACCOUNT_B, "repositoryName": "app/web"}, "ListImages",
     "app/web"),
    ("delete_repository", {"registryId": ACCOUNT_B, "repositoryName": "app/web"},
     "DeleteRepository", "app/web"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "params", "operation", "resource"), CROSS_ACCOUNT)
def test_a_key_cannot_act_in_another_account(
    auth_server: Server, method: str, params: dict[str, Any], operation: str, resource: str
) -> None:
    a = client(auth_server, KEY_A, SECRET_A)
    code, message, status = error_of(getattr(a, method), **params)
    assert (code, status) == ("AccessDeniedException", 400)
    assert message == (
        f"User: arn:aws:iam::{ACCOUNT_A}:root is not authorized to perform: ecr:{operation} "
        f"on resource: arn:aws:ecr:us-east-1:{ACCOUNT_B}:repository/{resource} because no "
        f"resource-based policy allows the ecr:{operation} action"
    )


SDK_ERRORS = [
    ("wrong-secret", KEY_A, "not-the-secret", {}, "InvalidSignatureException", MISMATCH),
    ("other-keys-secret", KEY_A, SECRET_B, {}, "InvalidSignatureException", MISMATCH),
    ("unknown-key", "AKIANOSUCHKEY0000000", SECRET_A, {}, "UnrecognizedClientException",
     UNKNOWN_KEY),
    ("unknown-region", KEY_A, SECRET_A, {"region_name": "mars-north-1"},
     "InvalidSignatureException",
     "Credential should be scoped to a valid region, not 'mars-north-1'."),
]  # fmt: skip


@pytest.mark.parametrize(
    ("key", "secret", "options", "code", "message"),
    [pytest.param(*case[1:], id=case[0]) for case in SDK_ERRORS],
)
def test_boto3_sees_aws_errors(
    auth_server: Server, key: str, secret: str, options: dict[str, Any], code: str, message: str
) -> None:
    ecr = client(auth_server, key, secret, **options)
    assert error_of(ecr.describe_repositories) == (code, message, 400)


def test_get_authorization_token(auth_server: Server) -> None:
    ecr = client(auth_server, KEY_B, SECRET_B)
    before = datetime.now(UTC)
    for params in ({}, {"registryIds": [ACCOUNT_B]}):
        data = ecr.get_authorization_token(**params)["authorizationData"]
        assert len(data) == 1
        user, _, password = base64.b64decode(data[0]["authorizationToken"]).decode().partition(":")
        assert user == "AWS" and password
        expected = before + timedelta(hours=12)
        assert abs(data[0]["expiresAt"] - expected) < timedelta(minutes=5)
        assert data[0]["proxyEndpoint"] == f"http://127.0.0.1:{auth_server.port}"
    code, message, _ = error_of(ecr.get_authorization_token, registryIds=[ACCOUNT_A])
    assert code == "AccessDeniedException"
    assert f"arn:aws:ecr:us-east-1:{ACCOUNT_A}:repository/*" in message


# --- the aws CLI ---------------------------------------------------------------------------------


def aws(server: Server, key: str, secret: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID=key,
        AWS_SECRET_ACCESS_KEY=secret,
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE="/nonexistent",
        AWS_SHARED_CREDENTIALS_FILE="/nonexistent",
    )
    return subprocess.run(
        [str(VENV_BIN / "aws"), "ecr", *args, "--endpoint-url", server.endpoint],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


@pytest.mark.slow  # the aws CLI
def test_aws_cli_with_a_known_key(auth_server: Server) -> None:
    name = f"cli/{uuid.uuid4().hex[:8]}"
    created = aws(auth_server, KEY_B, SECRET_B, "create-repository", "--repository-name", name)
    assert created.returncode == 0, created.stderr
    repo = json.loads(created.stdout)["repository"]
    assert repo["registryId"] == ACCOUNT_B
    assert repo["repositoryArn"] == f"arn:aws:ecr:us-east-1:{ACCOUNT_B}:repository/{name}"
    listed = aws(auth_server, KEY_B, SECRET_B, "describe-repositories", "--repository-names", name)
    assert listed.returncode == 0, listed.stderr
    assert [r["registryId"] for r in json.loads(listed.stdout)["repositories"]] == [ACCOUNT_B]


@pytest.mark.slow  # the aws CLI
@pytest.mark.parametrize(
    ("key", "secret", "code", "message"),
    [
        ("AKIANOSUCHKEY0000000", SECRET_A, "UnrecognizedClientException", UNKNOWN_KEY),
        (KEY_A, "wrong", "InvalidSignatureException", MISMATCH),
    ],
    ids=["unknown-key", "wrong-secret"],
)
def test_aws_cli_with_bad_credentials(
    auth_server: Server, key: str, secret: str, code: str, message: str
) -> None:
    result = aws(auth_server, key, secret, "describe-repositories")
    assert result.returncode == 255
    assert result.stdout == ""
    assert result.stderr.strip() == (
        f"An error occurred ({code}) when calling the DescribeRepositories operation: {message}"
    )


# --- without credentials -------------------------------------------------------------------------


def test_without_credentials_anything_goes(make_server: ServerFactory) -> None:
    server = make_server()
    for i, (key, secret) in enumerate(((KEY_A, SECRET_A), ("anything", "at-all"))):
        name = f"open/repo-{i}"
        repo = client(server, key, secret).create_repository(repositoryName=name)
        assert repo["repository"]["registryId"] == "123456789012"
    # another account named explicitly, and no signature at all, are accepted too
    other = client(server, "x", "y").describe_repositories(registryId=ACCOUNT_B)
    assert other["repositories"] == []
    response = post(server, {"X-Amz-Target": TARGET + "DescribeRepositories"}, BODY)
    assert response.status_code == 200, response.text
    assert len(response.json()["repositories"]) == 2


# --- the credentials file ------------------------------------------------------------------------

ENTRY = 'access_key_id = "AKIAX"\nsecret_access_key = "s"\naccount_id = "111111111111"\n'
BAD_FILES = [
    ("not-toml", "[[credentials]\nnope", "cannot read credentials file"),
    ("no-tables", 'title = "x"\n', "expected one or more [[credentials]] tables"),
    ("empty-list", "credentials = []\n", "expected one or more [[credentials]] tables"),
    ("no-secret", '[[credentials]]\naccess_key_id = "A"\naccount_id = "111111111111"\n',
     "credentials[0] lacks 'secret_access_key'"),
    ("short-account", ENTRY.replace("111111111111", "1234").join(["[[credentials]]\n", ""]),
     "credentials[0].account_id must be 12 digits"),
    ("empty-secret", ENTRY.replace('"s"', '""').join(["[[credentials]]\n", ""]),
     "credentials[0].secret_access_key is empty"),
    ("slash-in-key", ENTRY.replace("AKIAX", "AKIA/X").join(["[[credentials]]\n", ""]),
     "credentials[0].access_key_id must be non-empty"),
    ("principal-of-another-account",
     f'[[credentials]]\n{ENTRY}principal = "arn:aws:iam::222222222222:user/x"\n',
     "credentials[0].principal must be an IAM root, user or role ARN"),
    ("principal-not-an-arn", f'[[credentials]]\n{ENTRY}principal = "bob"\n',
     "credentials[0].principal must be an IAM root, user or role ARN"),
    ("duplicate-key", f"[[credentials]]\n{ENTRY}[[credentials]]\n"
     + ENTRY.replace("111111111111", "222222222222"), "access key 'AKIAX' appears more than once"),
]  # fmt: skip


@pytest.mark.slow  # openecr serve's exit code and stderr
@pytest.mark.parametrize(
    ("content", "message"), [pytest.param(*case[1:], id=case[0]) for case in BAD_FILES]
)
def test_serve_refuses_a_bad_credentials_file(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "credentials.toml"
    path.write_text(content)
    result = run_serve(tmp_path, str(path))
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"openecr: {path}") or result.stderr.startswith(
        f"openecr: cannot read credentials file {path}"
    )
    assert message in result.stderr


@pytest.mark.slow  # openecr serve's exit code and stderr
def test_serve_refuses_a_missing_credentials_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    result = run_serve(tmp_path, str(missing))
    assert result.returncode == 2
    assert result.stderr.startswith(f"openecr: cannot read credentials file {missing}: ")


def run_serve(tmp_path: Path, credentials: str) -> subprocess.CompletedProcess[str]:
    command = [str(VENV_BIN / "openecr"), "serve", "--port", str(free_port())]
    command += ["--data-dir", str(tmp_path / "data"), "--credentials", credentials]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)
