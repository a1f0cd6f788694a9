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
    repo = server.client().create_repository(repositoryName="envrepo")["repository"]
    assert repo["repositoryArn"] == "arn:aws:ecr:ap-south-1:111122223333:repository/envrepo"


@pytest.mark.slow  # openecr serve's exit code and stderr
def test_bad_settings_are_refused_at_startup(tmp_path: Path) -> None:
    for args in (["--account-id", "12345"], ["--registry-host", "{nope}.example"]):
        result = subprocess.run(
            [str(VENV_BIN / "openecr"), "serve", "--data-dir", str(tmp_path), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2
        assert result.stderr.startswith("openecr: ")
