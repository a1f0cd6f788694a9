"""Server settings: account, region and the registry host in URIs and proxy endpoints."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest

from conftest import VENV_BIN, ServerFactory


def test_default_uri_is_the_host_the_client_used(make_server: ServerFactory) -> None:
    server = make_server()
    repo = server.client().create_repository(repositoryName="app/web")["repository"]
    assert repo["repositoryUri"] == f"127.0.0.1:{server.port}/app/web"
    assert repo["registryId"] == "123456789012"
    assert repo["repositoryArn"] == "arn:aws:ecr:us-east-1:123456789012:repository/app/web"
    token = server.client().get_authorization_token()["authorizationData"][0]
    assert token["proxyEndpoint"] == f"http://127.0.0.1:{server.port}"


def test_account_region_and_host_template(make_server: ServerFactory) -> None:
    server = make_server(
        "--account-id",
        "210987654321",
        "--region",
        "eu-west-1",
        "--registry-host",
        "{account}.dkr.ecr.{region}.amazonaws.com",
    )
    client = server.client(region_name="eu-west-1")
    repo = client.create_repository(repositoryName="app/web")["repository"]
    assert repo["repositoryUri"] == "210987654321.dkr.ecr.eu-west-1.amazonaws.com/app/web"
    assert repo["repositoryArn"] == "arn:aws:ecr:eu-west-1:210987654321:repository/app/web"
    data = client.get_authorization_token()["authorizationData"][0]
    assert data["proxyEndpoint"] == "http://210987654321.dkr.ecr.eu-west-1.amazonaws.com"
    user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    assert user == "AWS" and password


def test_environment_configures_the_same_settings(make_server: ServerFactory) -> None:
    server = make_server(env={"OPENECR_ACCOUNT_ID": "111122223333", "OPENECR_REGION": "ap-south-1"})
    client = server.client(region_name="ap-south-1")
    repo = client.create_repository(repositoryName="envrepo")["repository"]
    assert repo["repositoryArn"] == "arn:aws:ecr:ap-south-1:111122223333:repository/envrepo"


@pytest.mark.slow  # openecr serve's exit code and stderr
def test_bad_settings_are_refused_at_startup(tmp_path: Path) -> None:
    for args in (
        ["--account-id", "12345"],
        ["--registry-host", "{nope}.example"],
        ["--blob-store", "gopher://blobs"],
        ["--blob-store", "file://host/relative"],
        ["--database-url", "oracle://db"],
        ["--port", "99999"],
        ["--port", "-1"],
        ["--data-dir", "/proc/nope"],
    ):
        result = subprocess.run(
            [str(VENV_BIN / "openecr"), "serve", "--data-dir", str(tmp_path), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2
        assert result.stderr.startswith("openecr: ")


def test_blob_store_by_url(make_server: ServerFactory, tmp_path: Path) -> None:
    """``--blob-store file:///elsewhere`` keeps blobs there; ``memory://`` keeps them in the
    process, and they are gone after a restart while the metadata stays."""
    import httpx

    elsewhere = tmp_path / "blobs-elsewhere"
    on_disk = make_server("--blob-store", elsewhere.as_uri())
    data = b"blob bytes for the store by url"
    digest = _push_blob(on_disk.endpoint, data)
    assert httpx.get(f"{on_disk.endpoint}/v2/urls/blobs/{digest}").content == data
    assert (elsewhere / "blobs" / "sha256" / digest[7:9] / digest[7:]).read_bytes() == data

    in_memory = make_server("--blob-store", "memory://")
    digest = _push_blob(in_memory.endpoint, data)
    assert httpx.get(f"{in_memory.endpoint}/v2/urls/blobs/{digest}").content == data
    assert not (in_memory.data_dir / "blobs" / "sha256").exists()
    in_memory.restart()
    lost = httpx.get(f"{in_memory.endpoint}/v2/urls/blobs/{digest}")
    assert lost.status_code == 404  # the link survived in SQLite, the bytes did not
    assert lost.json()["errors"][0]["code"] == "BLOB_UNKNOWN"


def _push_blob(endpoint: str, data: bytes) -> str:
    import hashlib

    import boto3
    import httpx

    boto3.client(
        "ecr",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
    ).create_repository(repositoryName="urls")
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    done = httpx.post(f"{endpoint}/v2/urls/blobs/uploads/", params={"digest": digest}, content=data)
    assert done.status_code == 201
    return digest


def test_a_registry_wholly_in_memory(make_server: ServerFactory) -> None:
    """``--database-url memory:// --blob-store memory://``: a throwaway registry (for test
    suites) that writes nothing to its data directory but its keys, and forgets on restart."""
    server = make_server("--database-url", "memory://", "--blob-store", "memory://")
    data = b"kept in memory"
    digest = _push_blob(server.endpoint, data)
    import httpx

    assert httpx.get(f"{server.endpoint}/v2/urls/blobs/{digest}").content == data
    assert not (server.data_dir / "metadata.db").exists()
    assert not (server.data_dir / "blobs" / "sha256").exists()
    server.restart()
    assert server.client().describe_repositories()["repositories"] == []
