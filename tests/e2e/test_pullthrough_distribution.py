"""Pull-through cache rules against the reference registry: Debian's docker-registry
(distribution 2.8) holds an image pushed by skopeo, anonymously and behind htpasswd (Basic)
auth; a real ``openecr serve`` caches it for docker and skopeo pulls through a rule (the
htpasswd login from a ``--secrets`` secret), and keeps serving it once distribution stops.
A multi-arch OCI index pushed with ``skopeo copy --all`` is pulled by docker for each platform
through a rule, cached with every child; docker's push into the cache is refused."""

from __future__ import annotations

import base64
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from conftest import ProcessServer, die_with_parent, free_port
from e2e.conftest import SKOPEO, Docker, read_dir_image, run
from e2e.images import Image, sha256, small_image
from e2e.test_multiarch import HOST, OCI_INDEX, OTHER, index_of, platform_images, write_source

ACCOUNT = "123456789012"
KEY, SECRET = "AKIDPTCMIRROR", "pull-through-secret"
ARN = f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:ecr-pullthroughcache/distribution"
DISTRIBUTION = "/usr/bin/docker-registry"
HTPASSWD = "/usr/bin/htpasswd"
USER, PASSWORD = "mirror", "distribution-password"

CONFIG = """\
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root}
http:
  addr: 127.0.0.1:{port}
{auth}"""
AUTH = """\
auth:
  htpasswd:
    realm: distribution
    path: {path}
"""


@dataclass
class Distribution:
    """One docker-registry process on loopback (stopped by PID)."""

    root: Path
    port: int
    htpasswd: Path | None
    process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Distribution:
        config = self.root / "config.yml"
        auth = AUTH.format(path=self.htpasswd) if self.htpasswd else ""
        config.write_text(CONFIG.format(root=self.root / "data", port=self.port, auth=auth))
        with (self.root / "registry.log").open("ab") as log:
            self.process = subprocess.Popen(
                [DISTRIBUTION, "serve", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, (self.root / "registry.log").read_text()
            try:
                httpx.get(f"http://{self.host}/v2/", timeout=1)
                return self
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("docker-registry did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None

    def push(self, image: Image, repository: str, tag: str, workdir: Path) -> None:
        """skopeo copies the image in, as it was built (``--preserve-digests``)."""
        source = image.write_dir(workdir / uuid.uuid4().hex)
        creds = ["--dest-creds", f"{USER}:{PASSWORD}"] if self.htpasswd else []
        run(
            [
                SKOPEO,
                "copy",
                "--dest-tls-verify=false",
                "--preserve-digests",
                *creds,
                f"dir:{source}",
                f"docker://{self.host}/{repository}:{tag}",
            ]
        )


@pytest.fixture
def distributions(tmp_path: Path) -> Iterator[tuple[Distribution, Distribution]]:
    for tool in (DISTRIBUTION, HTPASSWD):
        if not Path(tool).exists():
            pytest.fail(
                f"missing {tool}: run ./scripts/install-test-deps docker-registry apache2-utils"
            )
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(run([HTPASSWD, "-Bbn", USER, PASSWORD]).stdout)
    (tmp_path / "anon").mkdir()
    (tmp_path / "auth").mkdir()
    anonymous = Distribution(tmp_path / "anon", free_port(), None).start()
    private = Distribution(tmp_path / "auth", free_port(), htpasswd).start()
    yield anonymous, private
    anonymous.stop()
    private.stop()


def ecr_client(mirror: ProcessServer) -> Any:
    return boto3.client(
        "ecr",
        endpoint_url=mirror.endpoint,
        region_name="us-east-1",
        aws_access_key_id=KEY,
        aws_secret_access_key=SECRET,
    )


def docker_login(docker: Docker, ecr: Any, mirror: ProcessServer) -> str:
    """Log docker in to the mirror; return its ``host:port``."""
    token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    password = base64.b64decode(token).decode().partition(":")[2]
    host = f"127.0.0.1:{mirror.port}"
    docker("login", "-u", "AWS", "--password-stdin", host, input=password)
    return host


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[ProcessServer]:
    credentials = tmp_path / "credentials.toml"
    credentials.write_text(
        f'[[credentials]]\naccess_key_id = "{KEY}"\nsecret_access_key = "{SECRET}"\n'
        f'account_id = "{ACCOUNT}"\n'
    )
    secrets = tmp_path / "secrets.toml"
    secrets.write_text(
        f'[[secrets]]\narn = "{ARN}"\nusername = "{USER}"\naccessToken = "{PASSWORD}"\n'
    )
    (tmp_path / "mirror").mkdir()
    server = ProcessServer(
        tmp_path / "mirror" / "data",
        free_port(),
        ["--credentials", str(credentials), "--secrets", str(secrets)],
    )
    yield server.start()
    server.stop()


def test_docker_and_skopeo_pull_through_distribution(
    distributions: tuple[Distribution, Distribution],
    mirror: ProcessServer,
    docker: Docker,
    tmp_path: Path,
) -> None:
    anonymous, private = distributions
    public_image = small_image(f"ptc-anon-{uuid.uuid4().hex[:6]}")
    private_image = small_image(f"ptc-auth-{uuid.uuid4().hex[:6]}", oci=True)
    anonymous.push(public_image, "library/tool", "v1", tmp_path)
    private.push(private_image, "team/app", "v1", tmp_path)

    ecr = boto3.client(
        "ecr",
        endpoint_url=mirror.endpoint,
        region_name="us-east-1",
        aws_access_key_id=KEY,
        aws_secret_access_key=SECRET,
    )
    ecr.create_pull_through_cache_rule(
        ecrRepositoryPrefix="hub", upstreamRegistryUrl=f"http://{anonymous.host}"
    )
    ecr.create_pull_through_cache_rule(
        ecrRepositoryPrefix="corp", upstreamRegistryUrl=f"http://{private.host}", credentialArn=ARN
    )
    assert ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix="corp")["isValid"] is True
    token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    import base64

    password = base64.b64decode(token).decode().partition(":")[2]
    host = f"127.0.0.1:{mirror.port}"
    docker("login", "-u", "AWS", "--password-stdin", host, input=password)

    # docker pulls through both rules: the images arrive with their digests
    for name, image in (("hub/library/tool", public_image), ("corp/team/app", private_image)):
        docker("pull", f"{host}/{name}:v1")
        digests = docker(
            "image", "inspect", "--format", "{{json .RepoDigests}}", f"{host}/{name}:v1"
        )
        assert f"{host}/{name}@{image.digest}" in json.loads(digests.stdout)
        marker = docker("run", "--rm", "--network", "none", f"{host}/{name}:v1")
        assert image.marker in marker.stdout
    stored = ecr.describe_images(repositoryName="corp/team/app")["imageDetails"]
    assert [(d["imageDigest"], d["imageTags"]) for d in stored] == [(private_image.digest, ["v1"])]

    # skopeo reads the cached bytes verbatim
    out = tmp_path / "copied"
    run(
        [
            SKOPEO,
            "copy",
            "--src-tls-verify=false",
            "--src-creds",
            f"AWS:{password}",
            f"docker://{host}/corp/team/app:v1",
            f"dir:{out}",
        ]
    )
    manifest, blobs = read_dir_image(out)
    assert manifest == private_image.manifest
    assert blobs == private_image.blobs()

    # the upstreams stop: what was cached is still pulled; what was not is ECR's error
    anonymous.stop()
    private.stop()
    docker("rmi", f"{host}/hub/library/tool:v1", f"{host}/corp/team/app:v1")
    docker("pull", f"{host}/hub/library/tool:v1")
    failed = docker("pull", f"{host}/hub/library/other:v1", check=False)
    assert failed.returncode != 0
    code = ecr.batch_get_image(repositoryName="corp/team/app", imageIds=[{"imageTag": "v2"}])
    assert [f["failureCode"] for f in code["failures"]] == ["UpstreamUnavailable"]


def test_docker_pulls_a_multi_arch_index_through_a_rule(
    distributions: tuple[Distribution, Distribution],
    mirror: ProcessServer,
    docker: Docker,
    tmp_path: Path,
) -> None:
    anonymous, _ = distributions
    marker = f"ptc-multi-{uuid.uuid4().hex[:6]}"
    children = platform_images(marker, oci=True)
    index = index_of(children, OCI_INDEX)
    source = write_source(tmp_path / "source", children, index, OCI_INDEX)
    run(
        [
            SKOPEO,
            "copy",
            "--all",
            "--preserve-digests",
            "--dest-tls-verify=false",
            source,
            f"docker://{anonymous.host}/library/multi:v1",
        ]
    )
    ecr = ecr_client(mirror)
    ecr.create_pull_through_cache_rule(
        ecrRepositoryPrefix="hub", upstreamRegistryUrl=f"http://{anonymous.host}"
    )
    host = docker_login(docker, ecr, mirror)
    reference = f"{host}/hub/library/multi:v1"

    # the first pull caches the index with every child; each platform's pull gets its own
    for arch, option in ((OTHER, ("--platform", f"linux/{OTHER}")), (HOST, ())):
        docker("pull", *option, reference)
        inspect = json.loads(docker("image", "inspect", reference).stdout)[0]
        assert inspect["Id"] == children[arch].config_digest
        assert inspect["Architecture"] == arch
    assert docker("run", "--rm", "--network", "none", reference).stdout == f"{marker} {HOST}\n"
    details = ecr.describe_images(repositoryName="hub/library/multi")["imageDetails"]
    assert {d["imageDigest"]: d.get("imageTags") for d in details} == {
        children["amd64"].digest: None,
        children["arm64"].digest: None,
        sha256(index): ["v1"],
    }

    # only the cache writes there: docker's push is refused
    docker("tag", reference, f"{host}/hub/library/multi:mine")
    pushed = docker("push", f"{host}/hub/library/multi:mine", check=False)
    assert pushed.returncode != 0
    assert "denied" in pushed.stdout + pushed.stderr
    assert "pull through cache repository" in pushed.stdout + pushed.stderr
    docker("rmi", "--force", reference, f"{host}/hub/library/multi:mine")
    docker("rmi", "--force", children[OTHER].config_digest, check=False)
