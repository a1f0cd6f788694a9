"""Regions: a registry is an (account, region) pair. The ECR API acts in the region of the
request's SigV4 credential scope, ``/v2`` in the region of a ``<account>.dkr.ecr.<region>.*``
Host (else the token's, else the default); each region's registry sees nothing of another's."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import botocore.session
import httpx
import pytest
from botocore.exceptions import ClientError

from conftest import VENV_BIN, InProcessServer, Server, ServerFactory, free_port, make_image
from lifecycle_examples import rule
from lifecycle_seed import runtime_on
from openecr.api import regions
from openecr.domain.registries import account_of, region_of, registry_key
from openecr.service.tokens import TokenService
from test_auth import ACCOUNT_A, KEY_A, SECRET_A, write_credentials

ACCOUNT = "123456789012"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def code_of(call: Any, **params: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as caught:
        call(**params)
    error: Any = caught.value.response["Error"]
    return error["Code"], error["Message"]


@pytest.fixture
def regional(make_server: ServerFactory) -> Server:
    return make_server()


def test_registry_keys() -> None:
    assert registry_key(ACCOUNT, "us-east-1", "us-east-1") == ACCOUNT  # existing rows
    key = registry_key(ACCOUNT, "eu-west-1", "us-east-1")
    assert key != ACCOUNT
    assert (account_of(key), region_of(key, "us-east-1")) == (ACCOUNT, "eu-west-1")
    assert (account_of(ACCOUNT), region_of(ACCOUNT, "us-east-1")) == (ACCOUNT, "us-east-1")


def test_repositories_and_images_are_per_region(regional: Server) -> None:
    us, eu = regional.client(), regional.client(region_name="eu-west-1")
    made = eu.create_repository(repositoryName="app/web")["repository"]
    assert made["repositoryArn"] == f"arn:aws:ecr:eu-west-1:{ACCOUNT}:repository/app/web"
    assert made["registryId"] == ACCOUNT
    raw = make_image(eu, "app/web", seed="eu")
    eu.put_image(repositoryName="app/web", imageTag="v1", imageManifest=raw.decode())

    # invisible from us-east-1, whatever the operation
    assert us.describe_repositories()["repositories"] == []
    for call, params in (
        (us.describe_repositories, {"repositoryNames": ["app/web"]}),
        (us.batch_get_image, {"repositoryName": "app/web", "imageIds": [{"imageTag": "v1"}]}),
        (us.put_image, {"repositoryName": "app/web", "imageManifest": raw.decode()}),
        (us.initiate_layer_upload, {"repositoryName": "app/web"}),
        (us.list_images, {"repositoryName": "app/web"}),
        (us.get_lifecycle_policy, {"repositoryName": "app/web"}),
    ):
        code, message = code_of(call, **params)
        assert code == "RepositoryNotFoundException", (call, code)
        assert f"registry with id '{ACCOUNT}'" in message  # the account, never the key

    # the same name in us-east-1 is another repository
    other = us.create_repository(repositoryName="app/web")["repository"]
    assert other["repositoryArn"] == f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/app/web"
    got = us.batch_get_image(repositoryName="app/web", imageIds=[{"imageTag": "v1"}])
    assert got["images"] == [] and got["failures"][0]["failureCode"] == "ImageNotFound"
    # the layers uploaded in eu-west-1 are not there either
    layers = json.loads(raw)["layers"]
    checked = us.batch_check_layer_availability(
        repositoryName="app/web", layerDigests=[layers[0]["digest"]]
    )
    assert checked["failures"][0]["failureCode"] == "MissingLayerDigest"
    url = eu.get_download_url_for_layer(repositoryName="app/web", layerDigest=layers[0]["digest"])
    assert httpx.get(url["downloadUrl"]).status_code == 200  # the signed path names the registry
    code, _ = code_of(
        us.get_download_url_for_layer, repositoryName="app/web", layerDigest=layers[0]["digest"]
    )
    assert code == "LayersNotFoundException"
    [image] = eu.batch_get_image(repositoryName="app/web", imageIds=[{"imageTag": "v1"}])["images"]
    assert image["registryId"] == ACCOUNT and image["imageManifest"] == raw.decode()
    # deleting one leaves the other
    us.delete_repository(repositoryName="app/web")
    assert [r["repositoryName"] for r in eu.describe_repositories()["repositories"]] == ["app/web"]


def test_arns_uris_and_proxy_endpoint_carry_the_request_region(make_server: ServerFactory) -> None:
    server = make_server("--registry-host", "{account}.dkr.ecr.{region}.amazonaws.com")
    for region in ("eu-west-1", "ap-southeast-2", "us-east-1"):
        client = server.client(region_name=region)
        repo = client.create_repository(repositoryName="where")["repository"]
        assert repo["repositoryArn"] == f"arn:aws:ecr:{region}:{ACCOUNT}:repository/where"
        assert repo["repositoryUri"] == f"{ACCOUNT}.dkr.ecr.{region}.amazonaws.com/where"
        assert repo["registryId"] == ACCOUNT
        [data] = client.get_authorization_token()["authorizationData"]
        assert data["proxyEndpoint"] == f"http://{ACCOUNT}.dkr.ecr.{region}.amazonaws.com"
        kms = client.create_repository(
            repositoryName="kms", encryptionConfiguration={"encryptionType": "KMS"}
        )["repository"]
        assert kms["encryptionConfiguration"]["kmsKey"].startswith(
            f"arn:aws:kms:{region}:{ACCOUNT}:key/"
        )


def test_resource_tags_on_another_region_or_account_are_not_found(regional: Server) -> None:
    us, eu = regional.client(), regional.client(region_name="eu-west-1")
    arn = eu.create_repository(repositoryName="tagged")["repository"]["repositoryArn"]
    eu.tag_resource(resourceArn=arn, tags=[{"Key": "team", "Value": "eu"}])
    assert eu.list_tags_for_resource(resourceArn=arn)["tags"] == [{"Key": "team", "Value": "eu"}]
    other_account = arn.replace(ACCOUNT, "210987654321")
    for client, target in (
        (us, arn),
        (eu, other_account),
        (eu, arn.replace("eu-west-1", "eu-west-2")),
    ):
        for call, params in (
            (client.list_tags_for_resource, {}),
            (client.tag_resource, {"tags": [{"Key": "k", "Value": "v"}]}),
            (client.untag_resource, {"tagKeys": ["team"]}),
        ):
            code, _ = code_of(call, resourceArn=target, **params)
            assert code == "RepositoryNotFoundException", (target, call)
    assert eu.list_tags_for_resource(resourceArn=arn)["tags"] == [{"Key": "team", "Value": "eu"}]


def test_control_plane_documents_are_per_region(regional: Server) -> None:
    us, eu = regional.client(), regional.client(region_name="eu-west-1")
    default = us.get_account_setting(name="BLOB_MOUNTING")["value"]
    changed = "DISABLED" if default == "ENABLED" else "ENABLED"
    eu.put_account_setting(name="BLOB_MOUNTING", value=changed)
    assert eu.get_account_setting(name="BLOB_MOUNTING")["value"] == changed
    assert us.get_account_setting(name="BLOB_MOUNTING")["value"] == default

    policy = json.dumps({"rules": [rule(1, "any", "imageCountMoreThan", 1)]})
    for client in (us, eu):
        client.create_repository(repositoryName="cleaned")
        for seed in ("one", "two"):
            raw = make_image(client, "cleaned", seed=seed)
            client.put_image(repositoryName="cleaned", imageTag=seed, imageManifest=raw.decode())
    put = eu.put_lifecycle_policy(repositoryName="cleaned", lifecyclePolicyText=policy)
    assert put["registryId"] == ACCOUNT
    code, _ = code_of(us.get_lifecycle_policy, repositoryName="cleaned")
    assert code == "LifecyclePolicyNotFoundException"

    template = {"prefix": "tpl", "appliedFor": ["REPLICATION"], "description": "eu only"}
    eu.create_repository_creation_template(**template)
    described = eu.describe_repository_creation_templates()["repositoryCreationTemplates"]
    assert [t["prefix"] for t in described] == ["tpl"]
    assert us.describe_repository_creation_templates()["repositoryCreationTemplates"] == []

    # the lifecycle runner acts on each repository in its own region
    with runtime_on(regional.data_dir) as runtime:
        report = runtime.registry.lifecycle.run()
    assert len(report.actions) == 1
    assert len(eu.list_images(repositoryName="cleaned")["imageIds"]) == 1
    assert len(us.list_images(repositoryName="cleaned")["imageIds"]) == 2


def test_v2_with_a_regional_host(regional: Server) -> None:
    us, eu = regional.client(), regional.client(region_name="eu-west-1")
    eu.create_repository(repositoryName="pushed")
    eu_host = {"Host": f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com:{regional.port}"}
    with httpx.Client(base_url=regional.endpoint) as v2:
        blob = b"{}"
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        # the default region's registry (no regional Host) has no such repository
        assert v2.post("/v2/pushed/blobs/uploads/").status_code == 404
        started = v2.post("/v2/pushed/blobs/uploads/", headers=eu_host)
        assert started.status_code == 202
        done = v2.put(
            started.headers["location"], params={"digest": digest}, content=blob, headers=eu_host
        )
        assert done.status_code == 201
        raw = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": digest,
                    "size": 2,
                },
                "layers": [],
            }
        ).encode()
        put = v2.put(
            "/v2/pushed/manifests/v1",
            content=raw,
            headers={**eu_host, "Content-Type": OCI_MANIFEST},
        )
        assert put.status_code == 201, put.text
        assert v2.get("/v2/pushed/manifests/v1", headers=eu_host).content == raw
        assert v2.get("/v2/pushed/manifests/v1").status_code == 404
        us_host = {"Host": f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com:{regional.port}"}
        assert v2.get("/v2/pushed/manifests/v1", headers=us_host).status_code == 404
        assert v2.get("/v2/_catalog", headers=eu_host).json()["repositories"] == ["pushed"]
        assert v2.get("/v2/_catalog").json()["repositories"] == []
        # a region botocore does not know is no region: the default one
        odd = {"Host": f"{ACCOUNT}.dkr.ecr.nowhere.example:{regional.port}"}
        assert v2.get("/v2/pushed/manifests/v1", headers=odd).status_code == 404
    tags = eu.list_images(repositoryName="pushed")["imageIds"]
    assert tags == [{"imageDigest": "sha256:" + hashlib.sha256(raw).hexdigest(), "imageTag": "v1"}]
    assert us.describe_repositories()["repositories"] == []


def _password(client: Any) -> str:
    [data] = client.get_authorization_token()["authorizationData"]
    return base64.b64decode(data["authorizationToken"]).decode().partition(":")[2]


def test_credentials_in_another_region(make_server: ServerFactory, tmp_path: Path) -> None:
    server = make_server("--credentials", str(write_credentials(tmp_path)))
    eu = server.client(
        region_name="eu-west-1", aws_access_key_id=KEY_A, aws_secret_access_key=SECRET_A
    )
    us = server.client(aws_access_key_id=KEY_A, aws_secret_access_key=SECRET_A)
    repo = eu.create_repository(repositoryName="signed")["repository"]
    assert repo["repositoryArn"] == f"arn:aws:ecr:eu-west-1:{ACCOUNT_A}:repository/signed"
    assert us.describe_repositories()["repositories"] == []
    code, message = code_of(
        server.client(
            region_name="mars-north-1", aws_access_key_id=KEY_A, aws_secret_access_key=SECRET_A
        ).describe_repositories
    )
    assert (code, message) == (
        "InvalidSignatureException",
        "Credential should be scoped to a valid region, not 'mars-north-1'.",
    )

    # a token is for the registry of the region it was issued in
    eu_token = base64.b64encode(f"AWS:{_password(eu)}".encode()).decode()
    us_token = base64.b64encode(f"AWS:{_password(us)}".encode()).decode()
    eu_host = f"{ACCOUNT_A}.dkr.ecr.eu-west-1.amazonaws.com:{server.port}"
    us_host = f"{ACCOUNT_A}.dkr.ecr.us-east-1.amazonaws.com:{server.port}"
    path = "/v2/signed/tags/list"
    with httpx.Client(base_url=server.endpoint) as v2:

        def status(token: str, host: str | None) -> int:
            headers = {"Authorization": f"Basic {token}"}
            if host is not None:
                headers["Host"] = host
            return v2.get(path, headers=headers).status_code

        assert status(eu_token, eu_host) == 200
        assert status(eu_token, None) == 200  # no regional Host: the token's region
        assert status(us_token, None) == 404  # us-east-1 has no such repository
        assert status(us_token, eu_host) == 403
        assert status(eu_token, us_host) == 403


def test_default_region_data_survives_a_restart(tmp_path: Path) -> None:
    server = InProcessServer(tmp_path / "data", free_port())
    server.start()
    try:
        server.client().create_repository(repositoryName="old")
    finally:
        server.stop()
    server.start()
    try:
        names = [
            r["repositoryName"] for r in server.client().describe_repositories()["repositories"]
        ]
        assert names == ["old"]
        eu = server.client(region_name="eu-west-1")
        assert eu.describe_repositories()["repositories"] == []
    finally:
        server.stop()


@pytest.mark.slow  # runs the openecr CLI
def test_local_cli_acts_in_its_region(tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    base = [str(VENV_BIN / "openecr"), "--data-dir", str(tmp_path / "store")]

    def run(*args: str) -> Any:
        done = subprocess.run(
            [*base, *args], capture_output=True, text=True, env=env, timeout=120, check=False
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    made = run("create-repository", "--repository-name", "local/eu", "--region", "eu-west-1")
    assert made["repository"]["repositoryArn"] == (
        f"arn:aws:ecr:eu-west-1:{ACCOUNT}:repository/local/eu"
    )
    assert run("describe-repositories")["repositories"] == []
    found = run("describe-repositories", "--region", "eu-west-1")["repositories"]
    assert [r["repositoryName"] for r in found] == ["local/eu"]


def test_registry_host_template_names_the_region(make_server: ServerFactory) -> None:
    server = make_server("--registry-host", "{account}.registry.{region}.example")
    eu = server.client(region_name="eu-west-1")
    uri = eu.create_repository(repositoryName="templated")["repository"]["repositoryUri"]
    assert uri == f"{ACCOUNT}.registry.eu-west-1.example/templated"
    with httpx.Client(base_url=server.endpoint) as v2:
        eu_host = {"Host": f"{ACCOUNT}.registry.eu-west-1.example:{server.port}"}
        assert v2.get("/v2/templated/tags/list", headers=eu_host).status_code == 200
        us_host = {"Host": f"{ACCOUNT}.registry.us-east-1.example:{server.port}"}
        assert v2.get("/v2/templated/tags/list", headers=us_host).status_code == 404


def test_a_token_without_a_region_is_for_the_default_region(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    server = make_server("--credentials", str(write_credentials(tmp_path)))
    us = server.client(aws_access_key_id=KEY_A, aws_secret_access_key=SECRET_A)
    us.create_repository(repositoryName="older")
    secret = (server.data_dir / "secret.key").read_bytes()
    old = TokenService(secret).issue(ACCOUNT_A).password  # as issued before regions
    assert TokenService(secret).verify(old) == (ACCOUNT_A, None)
    token = base64.b64encode(f"AWS:{old}".encode()).decode()
    eu_host = f"{ACCOUNT_A}.dkr.ecr.eu-west-1.amazonaws.com:{server.port}"
    with httpx.Client(base_url=server.endpoint) as v2:
        auth = {"Authorization": f"Basic {token}"}
        assert v2.get("/v2/older/tags/list", headers=auth).status_code == 200
        assert v2.get("/v2/older/tags/list", headers={**auth, "Host": eu_host}).status_code == 403


def test_the_known_regions_are_botocores() -> None:
    """The regions a request may name are exactly what a botocore session lists for ECR, in
    every partition (read here without the session, see ``openecr.api.regions``)."""
    session = botocore.session.get_session()
    expected = {
        region
        for partition in session.get_available_partitions()
        for region in session.get_available_regions("ecr", partition_name=partition)
    }
    assert {"us-east-1", "eu-west-1", "cn-north-1", "us-gov-west-1"} <= expected
    assert regions._botocore_regions() == expected
    assert all(regions.is_known(region, "us-east-1") for region in expected)
    assert regions.is_known("mars-north-1", "mars-north-1")  # the default, whatever its name
    assert not regions.is_known("mars-north-1", "us-east-1")
