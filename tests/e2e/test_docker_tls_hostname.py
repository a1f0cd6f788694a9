"""docker over verified TLS to a registry with a real host name, and docker with Amazon's ECR
credential helper (``docker-credential-ecr-login``, Debian's amazon-ecr-credential-helper 0.6.0).

docker treats registries on loopback addresses (127.0.0.0/8, ::1) as insecure, whatever their
name resolves to there: its TLS path (certificate checked against ``certs.d``) only runs for an
address outside them. So openecr serves HTTPS on port 443 of a test host of its own: a network
namespace made here, reached over a veth pair with addresses from 198.18.0.0/15 (the range
RFC 2544 sets aside for testing). Nothing leaves the machine: the route to the test host is
checked to be the veth before anything connects, and the namespace and the veth are deleted at
teardown.

Host names: a private ``/etc/hosts`` and ``/etc/docker`` (for ``certs.d``), bind-mounted in a
mount namespace of dockerd's own (``unshare --mount``); the docker CLI and the credential helper
it runs enter that namespace (``nsenter --mount``). The machine's own files are never touched.

The credential helper 0.6.0 (aws-sdk-go-v2 1.17) takes no endpoint setting (neither
``AWS_ENDPOINT_URL``, which that SDK predates, nor one of its own) and accepts only registry
hosts ``<account>.dkr.ecr[-fips].<region>.amazonaws.com[.cn]``; it asks
``https://api.ecr.<region>.amazonaws.com`` for GetAuthorizationToken. It works with openecr where
those two names lead to openecr with a certificate the helper trusts: here the private hosts
file and ``AWS_CA_BUNDLE`` (or ``SSL_CERT_FILE`` where that is not set)."""

from __future__ import annotations

import ipaddress
import json
import os
import random
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from conftest import VENV_BIN, die_with_parent
from e2e.conftest import DOCKER, Docker, docker_load, pushed_digest, run
from e2e.images import small_image
from test_observability import make_certificates

pytestmark = pytest.mark.slow  # starts openecr serve, dockerd, docker

ACCOUNT = "123456789012"
ACCESS_KEY = "AKIDTLSHOST"
SECRET_KEY = "tls-host-secret"
REGION = "us-east-1"
NAME = f"{ACCOUNT}.dkr.ecr.{REGION}.example.internal"  # the real host name
ECR_NAME = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"  # what the credential helper accepts
API_NAME = f"api.ecr.{REGION}.amazonaws.com"  # where the helper asks for a token
HELPER = "/usr/bin/docker-credential-ecr-login"


@dataclass
class NetnsHost:
    """A network namespace with one veth end (``address``); the other end is on this host."""

    netns: str
    veth: str
    address: str
    gateway: str

    def run(self, *command: str) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *command]


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(["ip", *args], check=check)


@pytest.fixture(autouse=True)
def _proxy_followed_every_exchange() -> None:
    """These tests use a registry of their own, not the suite's recorded one."""


@pytest.fixture(scope="module")
def test_host() -> Iterator[NetnsHost]:
    tag = f"{os.getpid() % 100000}{random.randrange(100)}"
    block = random.randrange(1 << 15) * 4  # a /30 of 198.18.0.0/15
    base = (198 << 24) | (18 << 16) | block
    gateway, address = (
        ".".join(str((base + i) >> s & 255) for s in (24, 16, 8, 0)) for i in (1, 2)
    )
    host = NetnsHost(f"openecr-tls-{tag}", f"oetls{tag}a", address, gateway)
    peer = f"oetls{tag}b"
    try:
        _ip("netns", "add", host.netns)
        _ip("link", "add", host.veth, "type", "veth", "peer", "name", peer)
        _ip("link", "set", peer, "netns", host.netns)
        _ip("addr", "add", f"{gateway}/30", "dev", host.veth)
        _ip("link", "set", host.veth, "up")
        _ip("-n", host.netns, "addr", "add", f"{address}/30", "dev", peer)
        _ip("-n", host.netns, "link", "set", peer, "up")
        _ip("-n", host.netns, "link", "set", "lo", "up")
        route = _ip("route", "get", address).stdout
        assert f"dev {host.veth} " in route, f"the test host is not behind the veth: {route}"
        yield host
    finally:
        _ip("netns", "del", host.netns, check=False)
        _ip("link", "del", host.veth, check=False)  # gVisor keeps it after the netns goes


@dataclass
class TlsRegistry:
    address: str
    ca: Path
    log: Path

    def ecr(self) -> Any:
        return boto3.client(
            "ecr",
            endpoint_url=f"https://{self.address}",
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            verify=str(self.ca),
        )

    def password(self) -> str:
        import base64

        data = self.ecr().get_authorization_token()["authorizationData"][0]
        return base64.b64decode(data["authorizationToken"]).decode().partition(":")[2]


@pytest.fixture(scope="module")
def tls_registry(
    test_host: NetnsHost, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TlsRegistry]:
    """openecr serve on the test host's port 443, HTTPS with a certificate for the names."""
    work = tmp_path_factory.mktemp("tls-host")
    ca, cert, key = make_certificates(work / "tls", [NAME, ECR_NAME, API_NAME, test_host.address])
    credentials = work / "credentials.toml"
    credentials.write_text(
        f'[[credentials]]\naccess_key_id = "{ACCESS_KEY}"\n'
        f'secret_access_key = "{SECRET_KEY}"\naccount_id = "{ACCOUNT}"\n'
    )
    log = work / "server.log"
    command = test_host.run(
        str(VENV_BIN / "openecr"),
        "serve",
        "--host",
        test_host.address,
        "--port",
        "443",
        "--data-dir",
        str(work / "data"),
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(key),
        "--credentials",
        str(credentials),
        # the credential helper takes only a proxyEndpoint of Amazon's form
        "--registry-host",
        "{account}.dkr.ecr.{region}.amazonaws.com",
    )
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, preexec_fn=die_with_parent
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, log.read_text()
            try:
                probe = httpx.get(f"https://{test_host.address}/healthz", verify=False, timeout=1)
                if probe.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"openecr did not start: {log.read_text()}"
            time.sleep(0.1)
        yield TlsRegistry(test_host.address, ca, log)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class NamespacedDocker(Docker):
    """A dockerd in a mount namespace of its own with a private /etc/hosts and /etc/docker;
    the docker CLI runs in that namespace too (so do the credential helpers it starts)."""

    def __call__(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        config: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        assert self.process is not None
        merged = {**self.env, **(env or {})}
        if config is not None:
            merged["DOCKER_CONFIG"] = str(config)
        enter = ["nsenter", "--target", str(self.process.pid), "--mount"]
        return run([*enter, DOCKER, *args], input=input, env=merged, check=check)

    def resolves(self, name: str) -> str:
        assert self.process is not None
        enter = ["nsenter", "--target", str(self.process.pid), "--mount"]
        return run([*enter, "getent", "hosts", name]).stdout.split()[0]


@pytest.fixture(scope="module")
def tls_docker(
    test_host: NetnsHost, tls_registry: TlsRegistry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NamespacedDocker]:
    root = tmp_path_factory.mktemp("docker-tls")
    hosts = root / "hosts"
    hosts.write_text(f"127.0.0.1 localhost\n{test_host.address} {NAME} {ECR_NAME} {API_NAME}\n")
    etc_docker = root / "etc-docker"
    (etc_docker / "certs.d").mkdir(parents=True)
    made_etc_docker = not Path("/etc/docker").exists()
    if made_etc_docker:  # a mount point for the private one
        Path("/etc/docker").mkdir()
    script = 'mount --bind "$1" /etc/hosts && mount --bind "$2" /etc/docker && shift 2 && exec "$@"'
    wrapper = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"]
    daemon = NamespacedDocker(root, wrapper=[*wrapper, str(hosts), str(etc_docker)])
    try:
        daemon.start()
        for name in (NAME, ECR_NAME, API_NAME):  # before anything connects to these names
            assert daemon.resolves(name) == test_host.address
        yield daemon
    finally:
        daemon.stop()
        if made_etc_docker:
            Path("/etc/docker").rmdir()


def trust(docker: NamespacedDocker, registry: TlsRegistry, name: str) -> None:
    """docker's per-registry CA: certs.d/<host>/ca.crt (port 443: the bare host name)."""
    directory = docker.root / "etc-docker" / "certs.d" / name
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(registry.ca, directory / "ca.crt")


def test_docker_logs_in_pushes_and_pulls_over_verified_tls_by_host_name(
    tls_docker: NamespacedDocker, tls_registry: TlsRegistry, tmp_path: Path
) -> None:
    docker, registry = tls_docker, tls_registry
    info = json.loads(docker("info", "--format", "{{json .RegistryConfig}}").stdout)
    insecure = [ipaddress.ip_network(c) for c in info.get("InsecureRegistryCIDRs") or []]
    assert insecure, info  # docker's default, 127.0.0.0/8 (and ::1/128)
    assert not any(ipaddress.ip_address(registry.address) in net for net in insecure), info
    assert not (info.get("IndexConfigs") or {}).get(NAME)

    registry.ecr().create_repository(repositoryName="tls/app")
    password = registry.password()
    login = ["login", "--username", "AWS", "--password-stdin", NAME]
    refused = docker(*login, input=password, check=False)
    assert refused.returncode != 0
    assert "certificate signed by unknown authority" in refused.stderr, refused.stderr

    trust(docker, registry, NAME)
    assert "Login Succeeded" in docker(*login, input=password).stdout
    image = small_image("tls-hostname")
    reference = f"{NAME}/tls/app:v1"
    docker_load(docker, image, reference, tmp_path)
    digest = pushed_digest(docker("push", reference).stdout)
    docker("rmi", reference)
    pulled = docker("pull", reference).stdout
    assert digest in pulled
    assert docker("image", "inspect", "--format", "{{.Id}}", reference).stdout.strip() == (
        image.config_digest
    )
    got = registry.ecr().batch_get_image(repositoryName="tls/app", imageIds=[{"imageTag": "v1"}])
    assert got["images"][0]["imageId"]["imageDigest"] == digest
    assert '"PUT /v2/tls/app/manifests/v1" PutManifest 201' in registry.log.read_text()


def test_docker_with_the_ecr_credential_helper(
    tls_docker: NamespacedDocker, tls_registry: TlsRegistry, tmp_path: Path
) -> None:
    docker, registry = tls_docker, tls_registry
    assert os.access(HELPER, os.X_OK), "make test installs amazon-ecr-credential-helper"
    registry.ecr().create_repository(repositoryName="helper/app")
    trust(docker, registry, ECR_NAME)
    config = tmp_path / "docker-config"
    config.mkdir()
    (config / "config.json").write_text(json.dumps({"credHelpers": {ECR_NAME: "ecr-login"}}))
    home = tmp_path / "home"  # the helper logs to ~/.ecr
    home.mkdir()
    env = {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ECR_DISABLE_CACHE": "true",
        "AWS_CONFIG_FILE": "/nonexistent",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
        "SSL_CERT_FILE": str(registry.ca),  # Go's roots: the test CA alone
        "AWS_CA_BUNDLE": str(registry.ca),  # the SDK's, which replace Go's when set
        "HOME": str(home),
    }
    assert docker.process is not None
    enter = ["nsenter", "--target", str(docker.process.pid), "--mount"]
    got = run([*enter, HELPER, "get"], input=ECR_NAME, env=env)
    secret = json.loads(got.stdout)
    assert secret["Username"] == "AWS" and secret["Secret"]
    assert "GetAuthorizationToken 200" in registry.log.read_text()

    image = small_image("credential-helper")
    reference = f"{ECR_NAME}/helper/app:v1"
    docker_load(docker, image, reference, tmp_path)
    digest = pushed_digest(docker("push", reference, config=config, env=env).stdout)
    docker("rmi", reference)
    assert digest in docker("pull", reference, config=config, env=env).stdout
    got_image = registry.ecr().batch_get_image(
        repositoryName="helper/app", imageIds=[{"imageTag": "v1"}]
    )
    assert got_image["images"][0]["imageId"]["imageDigest"] == digest
    log = registry.log.read_text()
    assert f'{ACCOUNT} token:{ACCOUNT} "PUT /v2/helper/app/manifests/v1"' in log, log[-3000:]

    # another host name is refused by the helper itself, before any request
    other = run([*enter, HELPER, "get"], input=NAME, env=env, check=False)
    assert other.returncode != 0
    assert "credentials not found" in other.stdout  # what docker is told; the reason is logged
    helper_log = (home / ".ecr" / "log" / "ecr-login.log").read_text()
    assert "can only be used with Amazon Elastic Container Registry" in helper_log, helper_log
