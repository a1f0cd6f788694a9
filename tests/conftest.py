"""Shared fixtures: real openecr servers on loopback and real clients against them.

Servers run in-process (:class:`InProcessServer`: the serve command's app under uvicorn in a
thread) unless a test needs a process (:class:`ProcessServer`, ``make_server(...,
process=True)``): those tests, and every other test that starts a subprocess (the ``aws`` and
``openecr`` CLIs, the benchmark), are marked ``slow``; ``make test-fast`` runs the rest."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, Protocol, cast, overload

import boto3
import httpcore  # noqa: F401 (see below)
import httpx
import pytest
import uvicorn

from openecr.bootstrap import Runtime, build_app, build_runtime
from openecr.cli import serve
from openecr.config import Config
from storage_servers import PostgresCluster, SeaweedFS, die_with_parent, free_port, free_ports

# httpx imports httpcore on its first request; httpcore imports trio when it is installed
# (selenium, for tests/test_ui_browser.py, brings it), and trio's import runs ldconfig: the
# import above happens at collection, before the audit hook below refuses processes in tests.
ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
ACCOUNT = "123456789012"


def _build_httpx_default_ssl_context_once() -> None:
    """httpx makes an SSL context, loading certifi's bundle (20-40 ms), for each ``httpx.get``
    and each client, though every request here is plain HTTP to loopback (~500 of them took
    20 s of a run): the default context is made once and shared (SSLContext is thread-safe)."""
    from httpx._transports import default

    create = httpx.create_ssl_context
    made: list[ssl.SSLContext] = []

    def create_once(
        verify: ssl.SSLContext | str | bool = True, cert: Any = None, trust_env: bool = True
    ) -> ssl.SSLContext:
        if verify is not True or cert is not None or not trust_env:
            return create(verify=verify, cert=cert, trust_env=trust_env)
        if not made:
            made.append(create())
        return made[0]

    default.create_ssl_context = create_once  # type: ignore[attr-defined]


_build_httpx_default_ssl_context_once()


class Server(ABC):
    """A running openecr server on 127.0.0.1: :class:`InProcessServer` (the default) or
    :class:`ProcessServer`. ``args`` are ``openecr serve`` options, ``env`` the ``OPENECR_*``
    variables it sees on top of this process's environment."""

    def __init__(
        self,
        data_dir: Path,
        port: int,
        args: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.port = port
        self.args = list(args or [])
        self.env = dict(env or {})
        self.log: Path | None = None
        self._default_client: Any = None

    @property
    def endpoint(self) -> str:
        scheme = "https" if "--tls-cert" in self.args else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def serve_arguments(self) -> list[str]:
        """The ``openecr serve`` options of this server (the command's own, after ``serve``)."""
        return [
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

    @abstractmethod
    def start(self) -> Server:
        """Start serving and return once the server answers its health check."""

    @abstractmethod
    def stop(self) -> None:
        """Stop serving (idempotent)."""

    def restart(self) -> Server:
        self.stop()
        return self.start()

    def _forget_clients(self) -> None:
        if self._default_client is not None:
            self._default_client.close()
            self._default_client = None

    def client(self, **kwargs: Any) -> Any:
        """A boto3 ECR client for this server (any credentials unless given). Without
        arguments, the one default client of this server run (a new client costs ~10 ms)."""
        if not kwargs:
            if self._default_client is None:
                self._default_client = self.client(region_name="us-east-1")
            return self._default_client
        params: dict[str, Any] = {
            "region_name": "us-east-1",
            "aws_access_key_id": "AKIDEXAMPLE",
            "aws_secret_access_key": "secret",
            **kwargs,
        }
        return boto3.client("ecr", endpoint_url=self.endpoint, **params)


# --- the fast tier starts no process -------------------------------------------------------------

_current_test: list[pytest.Item] = []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    _current_test.append(item)  # its fixtures may start servers
    try:
        return (yield)
    finally:
        _current_test.pop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    _current_test.append(item)
    try:
        return (yield)
    finally:
        _current_test.pop()


def _refuse_processes_in_fast_tests(event: str, args: tuple[Any, ...]) -> None:
    """An audit hook: a test not marked ``slow`` (or ``e2e``) that starts a process (a server,
    the aws or openecr CLI) fails at once, so ``make test-fast`` never waits for one."""
    if event != "subprocess.Popen" or not _current_test:
        return
    item = _current_test[-1]
    if item.get_closest_marker("slow") is None and item.get_closest_marker("e2e") is None:
        raise RuntimeError(
            f"{item.nodeid} starts a process ({args[1]!r}): mark it @pytest.mark.slow, or use "
            "an in-process server"
        )


sys.addaudithook(_refuse_processes_in_fast_tests)


class ProcessServer(Server):
    """A running ``openecr serve`` subprocess: for ``--workers``, signals and SIGKILL, process
    output and exit codes, the e2e clients. Its output goes to ``log``."""

    def __init__(
        self,
        data_dir: Path,
        port: int,
        args: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__(data_dir, port, args, env)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ProcessServer:
        self.log = self.data_dir.parent / f"server-{self.port}-{uuid.uuid4().hex[:6]}.log"
        command = [str(VENV_BIN / "openecr"), "serve", *self.serve_arguments()]
        env = {**os.environ, **self.env}
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                preexec_fn=die_with_parent,
            )
        # generous: --workers N starts N+1 interpreters, slow on a loaded 2-core machine
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"openecr serve exited: {self.log.read_text()}")
            try:
                probe = httpx.get(f"{self.endpoint}/healthz", timeout=1, verify=False)
                if probe.status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError(f"openecr serve did not start: {self.log.read_text()}")

    def stop(self) -> None:
        self._forget_clients()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


# --- in-process servers ---------------------------------------------------------------------------


class InProcessServer(Server):
    """The app ``openecr serve`` runs (``build_runtime`` + ``build_app`` from a Config parsed
    by the serve command's own arguments), under uvicorn in a thread of the pytest process, on
    a loopback socket bound here: clients still speak real HTTP to it. No log file (``log`` is
    None): uvicorn's and openecr's records go to pytest's log capture; no ``gc.freeze``, no
    signal handlers, no ``logging.basicConfig``."""

    def __init__(
        self,
        data_dir: Path,
        port: int,
        args: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__(data_dir, port, args, env)
        self._uvicorn: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._runtime: Runtime | None = None
        self._socket: socket.socket | None = None

    @property
    def runtime(self) -> Runtime:
        """The running app's registry and stores (for tests that need to hold a transaction)."""
        assert self._runtime is not None, "not started"
        return self._runtime

    def config(self) -> Config:
        others = sorted(name for name in self.env if not name.startswith("OPENECR_"))
        if others:  # only the Config reads the environment here: the process's is shared
            raise ValueError(f"{others} need a process of their own: make_server(process=True)")
        parser = argparse.ArgumentParser(prog="openecr serve")
        serve.add_arguments(parser)
        config = serve.config_from_args(
            parser.parse_args(self.serve_arguments()), {**os.environ, **self.env}
        )
        if config.workers > 1:
            raise ValueError("--workers needs a real process: make_server(..., process=True)")
        if "--access-log" not in self.args and "OPENECR_ACCESS_LOG" not in self.env:
            # off unless a test asks for it: thousands of lines would only slow the suite
            config = dataclasses.replace(config, access_log="off")
        return config

    def start(self) -> InProcessServer:
        assert self._thread is None, "already started"
        config = self.config()
        runtime = build_runtime(config)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", self.port))
            server = uvicorn.Server(
                uvicorn.Config(
                    build_app(runtime),
                    # no handlers or formatters installed in this process (uvicorn only sets
                    # its own loggers' levels)
                    log_config=None,
                    **serve.uvicorn_options(config),
                )
            )
            thread = threading.Thread(
                target=server.run,
                kwargs={"sockets": [sock]},
                name=f"openecr-{self.port}",
                daemon=True,
            )
            thread.start()
            deadline = time.monotonic() + 30
            while not server.started:
                if not thread.is_alive() or time.monotonic() > deadline:
                    server.should_exit = True
                    thread.join(timeout=10)
                    raise RuntimeError(f"in-process openecr on {self.port} did not start")
                time.sleep(0.005)
        except BaseException:
            sock.close()
            runtime.close()
            raise
        self._uvicorn, self._thread, self._runtime, self._socket = server, thread, runtime, sock
        return self

    def stop(self) -> None:
        self._forget_clients()
        if self._thread is None:
            return
        assert self._uvicorn is not None and self._runtime is not None and self._socket
        self._uvicorn.should_exit = True
        self._thread.join(timeout=30)
        if self._thread.is_alive():  # a request outlived the graceful shutdown
            self._uvicorn.force_exit = True
            self._thread.join(timeout=10)
        alive = self._thread.is_alive()
        self._socket.close()
        self._runtime.close()
        self._uvicorn = self._thread = self._runtime = self._socket = None
        if alive:
            raise RuntimeError(f"in-process openecr on {self.port} did not stop")


class ServerFactory(Protocol):
    """``make_server``: ``openecr serve`` options as arguments."""

    @overload
    def __call__(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        data_dir: Path | None = None,
        process: Literal[False] = False,
    ) -> Server: ...

    @overload
    def __call__(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        data_dir: Path | None = None,
        process: Literal[True],
    ) -> ProcessServer: ...


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[ServerFactory]:
    """Start fresh servers with their own data directories; all stop at teardown. In-process
    unless ``process=True`` (an ``openecr serve`` subprocess, for tests marked slow)."""
    started: list[Server] = []

    def factory(
        *args: str,
        env: dict[str, str] | None = None,
        data_dir: Path | None = None,
        process: bool = False,
    ) -> Any:
        directory = data_dir or tmp_path / f"data-{len(started)}"
        kind = ProcessServer if process else InProcessServer
        server = kind(directory, free_port(), list(args), env or {})
        started.append(server)
        return server.start()

    yield cast(ServerFactory, factory)
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """A private PostgreSQL cluster for the session (tests using it are marked slow)."""
    cluster = PostgresCluster(free_port()).start()
    yield cluster
    cluster.remove()


@pytest.fixture
def postgres_url(postgres: PostgresCluster) -> Iterator[str]:
    """The SQLAlchemy URL of a new, empty database, dropped after the test."""
    url = postgres.database()
    yield url
    postgres.drop(url)


@pytest.fixture(scope="session")
def seaweedfs() -> Iterator[SeaweedFS]:
    """A private SeaweedFS S3 server for the session (tests using it are marked slow)."""
    weed = SeaweedFS(free_ports(8)).start()
    yield weed
    weed.remove()


@pytest.fixture(scope="session")
def s3_bucket(seaweedfs: SeaweedFS) -> str:
    """One bucket of the session's SeaweedFS."""
    return seaweedfs.bucket()


@pytest.fixture
def s3_env(seaweedfs: SeaweedFS, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The standard AWS settings that point botocore at the session's SeaweedFS (set in this
    process's environment for the test, and returned for processes)."""
    env = {
        "AWS_ENDPOINT_URL_S3": seaweedfs.endpoint,
        "AWS_ACCESS_KEY_ID": "openecr",
        "AWS_SECRET_ACCESS_KEY": "openecr-secret",
        "AWS_REGION": "us-east-1",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def s3_blob_store(s3_bucket: str, s3_env: dict[str, str]) -> str:
    """``s3://BUCKET/PREFIX``: a fresh, empty place in the session's bucket."""
    return f"s3://{s3_bucket}/{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One in-process server shared by the session; tests keep apart through unique repository
    names."""
    srv = InProcessServer(tmp_path_factory.mktemp("shared") / "data", free_port()).start()
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


def client_error(call: Any, **kwargs: Any) -> tuple[str, str, int]:
    """Run a boto3 call that must fail; return its error code, message and HTTP status."""
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    response = caught.value.response
    return (
        response["Error"]["Code"],
        response["Error"]["Message"],
        response["ResponseMetadata"]["HTTPStatusCode"],
    )


def unvalidated_client(server: Server) -> Any:
    """A boto3 client that sends what it is given (no client-side validation, no retries),
    as other SDKs and raw HTTP callers can."""
    from botocore.config import Config

    return server.client(config=Config(parameter_validation=False, retries={"max_attempts": 1}))


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
