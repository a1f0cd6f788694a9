"""Shared fixtures: real ``openecr serve`` processes on loopback and real clients against them."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
ACCOUNT = "123456789012"


def die_with_parent() -> None:
    """In the child before exec: SIGTERM when pytest dies, even by SIGKILL (Linux prctl)."""
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A running ``openecr serve`` subprocess."""

    data_dir: Path
    port: int
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Server:
        self.log = self.data_dir.parent / f"server-{self.port}-{uuid.uuid4().hex[:6]}.log"
        command = [
            str(VENV_BIN / "openecr"),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            "--log-level",
            "warning",
            *self.args,
        ]
        env = {**os.environ, **self.env}
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                preexec_fn=die_with_parent,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"openecr serve exited: {self.log.read_text()}")
            try:
                if httpx.get(f"{self.endpoint}/openecr/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError(f"openecr serve did not start: {self.log.read_text()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> Server:
        self.stop()
        return self.start()

    def client(self, **kwargs: Any) -> Any:
        """A boto3 ECR client for this server (any credentials unless given)."""
        params: dict[str, Any] = {
            "region_name": "us-east-1",
            "aws_access_key_id": "AKIDEXAMPLE",
            "aws_secret_access_key": "secret",
            **kwargs,
        }
        return boto3.client("ecr", endpoint_url=self.endpoint, **params)


ServerFactory = Callable[..., Server]


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[ServerFactory]:
    """Start fresh servers with their own data directories; all stop at teardown."""
    started: list[Server] = []

    def factory(
        *args: str, env: dict[str, str] | None = None, data_dir: Path | None = None
    ) -> Server:
        directory = data_dir or tmp_path / f"data-{len(started)}"
        server = Server(directory, free_port(), list(args), env or {})
        started.append(server)
        return server.start()

    yield factory
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server shared by the session; tests keep apart through unique repository names."""
    srv = Server(tmp_path_factory.mktemp("shared") / "data", free_port()).start()
    yield srv
    srv.stop()


@pytest.fixture
def ecr(server: Server) -> Any:
    return server.client()


@pytest.fixture
def repo_name() -> str:
    return f"test/repo-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def repo(ecr: Any, repo_name: str) -> str:
    ecr.create_repository(repositoryName=repo_name)
    return repo_name


def run_aws(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the real ``aws ecr`` CLI against ``server`` with throwaway credentials and no profile."""
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": "/nonexistent",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
    }
    return subprocess.run(
        [str(VENV_BIN / "aws"), "--endpoint-url", server.endpoint, "ecr", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def aws_json(server: Server, *args: str) -> Any:
    """``run_aws`` that must succeed; its stdout parsed as JSON."""
    result = run_aws(server, *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def upload_blob(client: Any, repository: str, data: bytes, registry_id: str | None = None) -> str:
    """Upload ``data`` through the ECR layer API (into ``registry_id``'s registry when given);
    return its digest."""
    import hashlib

    where: dict[str, str] = {"repositoryName": repository}
    if registry_id is not None:
        where["registryId"] = registry_id
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    upload = client.initiate_layer_upload(**where)
    if data:
        client.upload_layer_part(
            **where,
            uploadId=upload["uploadId"],
            partFirstByte=0,
            partLastByte=len(data) - 1,
            layerPartBlob=data,
        )
    client.complete_layer_upload(**where, uploadId=upload["uploadId"], layerDigests=[digest])
    return digest


def make_image(
    client: Any,
    repository: str,
    *,
    seed: str = "",
    media_type: str = "application/vnd.docker.distribution.manifest.v2+json",
    layers: int = 1,
) -> bytes:
    """Upload a config and layers, and return the bytes of a manifest referencing them
    (not yet put). ``seed`` makes distinct images."""
    oci = media_type == "application/vnd.oci.image.manifest.v1+json"
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "seed": seed, "rootfs": {"type": "layers"}}
    ).encode()
    config_digest = upload_blob(client, repository, config)
    layer_descs = []
    for i in range(layers):
        blob = f"layer {seed} {i} {uuid.uuid4().hex}".encode()
        layer_descs.append(
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip"
                if oci
                else "application/vnd.docker.image.rootfs.diff.tar.gzip",
                "size": len(blob),
                "digest": upload_blob(client, repository, blob),
            }
        )
    manifest = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json"
            if oci
            else "application/vnd.docker.container.image.v1+json",
            "size": len(config),
            "digest": config_digest,
        },
        "layers": layer_descs,
    }
    return json.dumps(manifest, indent=3).encode()
