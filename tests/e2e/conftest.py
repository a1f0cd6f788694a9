"""End-to-end fixtures: real container clients (docker with its own dockerd, podman, skopeo and
the oras Python SDK) against a real ``openecr serve`` on 127.0.0.1, through a recording proxy.

The registry under test is openecr, started with a credentials file, so every client logs in
with the password from ``openecr get-login-password`` as it would with ECR, and repositories
are created through the ECR API before a push. The proxy records every HTTP exchange, so tests
assert what the clients really sent (upload shapes, mounts, manifest bytes).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import httpx
import pytest

from conftest import VENV_BIN, ProcessServer, die_with_parent, free_port
from e2e.images import Image
from e2e.recorder import Exchange, RecordingProxy

ACCOUNT = "123456789012"
ACCESS_KEY = "AKIDE2EPUSHER"
SECRET_KEY = "e2e-secret-access-key"

# docker.io's client, not whatever `docker` comes first on PATH: it matches the daemon.
DOCKER = "/usr/bin/docker"
DOCKERD = "/usr/sbin/dockerd"
PODMAN = "/usr/bin/podman"
SKOPEO = "/usr/bin/skopeo"
DEBIAN_PACKAGES = "skopeo podman docker.io busybox-static"

# Podman's default rlimits (nofile/nproc 1048576) need CAP_SYS_RESOURCE, which sandboxes such
# as this one lack: runc then fails "error setting rlimit type 7: operation not permitted".
PODMAN_RUN_LIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.e2e)


class CommandFailed(AssertionError):
    pass


def run(
    command: Sequence[str | Path],
    *,
    input: str | None = None,
    env: dict[str, str] | None = None,
    check: bool = True,
    timeout: float = 240,
) -> subprocess.CompletedProcess[str]:
    """Run a client; on failure the assertion carries its exact output."""
    args = [str(part) for part in command]
    result = subprocess.run(
        args,
        input=input,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        raise CommandFailed(
            f"`{' '.join(args)}` exited {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result


def unique(prefix: str) -> str:
    return f"e2e/{prefix}-{uuid.uuid4().hex[:8]}"


@dataclass
class Registry:
    """The registry under test, as clients see it: through the recording proxy."""

    proxy: RecordingProxy
    upstream: str
    workdir: Path
    server_log: Path

    @property
    def host(self) -> str:
        return self.proxy.host

    def ecr(self) -> Any:
        """A boto3 ECR client signed with the test credentials (straight to the server)."""
        return boto3.client(
            "ecr",
            endpoint_url=self.upstream,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    def create_repository(self, name: str) -> str:
        """Repositories exist before a push, as on ECR; returns ``host/name``."""
        self.ecr().create_repository(repositoryName=name)
        return f"{self.host}/{name}"

    @functools.cached_property
    def token(self) -> str:
        """One login password for the session's clients (the CLI takes seconds to start)."""
        return self.password()

    def password(self, cli: str = "openecr") -> str:
        """``openecr get-login-password`` (or ``aws ecr get-login-password``), the real CLI."""
        command = [VENV_BIN / "openecr"] if cli == "openecr" else [VENV_BIN / "aws", "ecr"]
        result = run(
            [*command, "get-login-password", "--endpoint-url", self.upstream],
            env={
                "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                "AWS_DEFAULT_REGION": "us-east-1",
            },
        )
        return result.stdout.strip()

    def batch_get_manifest(self, repository: str, digest: str) -> dict[str, Any]:
        got = self.ecr().batch_get_image(
            repositoryName=repository, imageIds=[{"imageDigest": digest}]
        )
        assert got["failures"] == [], got["failures"]
        [image] = got["images"]
        return dict(image)

    def get_blob(self, repository: str, digest: str) -> bytes:
        """A blob through /v2 with Basic auth, as a client would fetch it."""
        auth = httpx.BasicAuth("AWS", self.token)
        response = httpx.get(
            f"http://{self.host}/v2/{repository}/blobs/{digest}",
            auth=auth,
            follow_redirects=True,
            timeout=60,
        )
        assert response.status_code == 200, response.text
        return response.content

    def manifest_puts(self, since: int, repository: str) -> list[Exchange]:
        return [
            e
            for e in self.proxy.since(since)
            if e.method == "PUT" and e.path.startswith(f"/v2/{repository}/manifests/")
        ]

    def upload_sessions(self, since: int, repository: str) -> list[list[Exchange]]:
        """Blob uploads into ``repository``: each a POST to ``/v2/<name>/blobs/uploads/`` and
        the requests that followed its (opaque) Location chain, in order."""
        sessions: list[list[Exchange]] = []
        open_at: dict[str, list[Exchange]] = {}  # location path -> its session
        for e in self.proxy.since(since):
            # A 401 (no credentials sent yet) leaves the session where it was.
            session = open_at.get(e.path) if e.status == 401 else open_at.pop(e.path, None)
            if (
                e.method == "POST"
                and e.path == f"/v2/{repository}/blobs/uploads/"
                and e.status == 202  # not a mount (201), nor refused (401 before login)
            ):
                session = []
                sessions.append(session)
            if session is None:
                continue
            session.append(e)
            location = e.response_headers.get("location")
            if location and e.status == 202:  # 201 closes the session (Location: the blob)
                open_at[urlsplit(location).path] = session
        return sessions


def assert_patch_uploads(
    registry: Registry, mark: int, repository: str, sizes: dict[str, int], *, framing: str
) -> None:
    """Every blob of ``sizes`` (digest -> size) reached ``repository`` by a mount, was already
    there, or went up as POST, PATCH (the bytes, in one or more requests) and a PUT with
    ``?digest=`` and no body: the streamed upload docker and skopeo use. ``framing`` is how the
    PATCH bodies travel: ``transfer-encoding`` (HTTP chunked) or ``content-length``."""
    uploaded = {}
    for session in registry.upload_sessions(mark, repository):
        session = [e for e in session if e.status != 401]
        methods = [e.method for e in session]
        assert methods[0] == "POST" and methods[-1] == "PUT", methods
        assert set(methods[1:-1]) == {"PATCH"}, methods
        assert session[0].status == 202 and session[-1].status == 201, [str(e) for e in session]
        assert session[-1].body_size == 0
        for patch in session[1:-1]:
            assert framing in patch.headers, patch.headers
        uploaded[session[-1].query["digest"]] = sum(e.body_size for e in session[1:-1])
    assert uploaded, "no blob was uploaded"
    assert uploaded == {digest: sizes[digest] for digest in uploaded}
    exchanges = registry.proxy.since(mark)
    mounted = {
        e.query.get("mount")
        for e in exchanges
        if e.method == "POST" and e.path == f"/v2/{repository}/blobs/uploads/" and e.status == 201
    }
    present = {
        e.path.rsplit("/", 1)[-1]
        for e in exchanges
        if e.method == "HEAD" and e.path.startswith(f"/v2/{repository}/blobs/") and e.status == 200
    }
    assert set(sizes) <= set(uploaded) | mounted | present


def _start_openecr(workdir: Path) -> tuple[ProcessServer, str]:
    credentials = workdir / "credentials.toml"
    credentials.write_text(
        "[[credentials]]\n"
        f'access_key_id = "{ACCESS_KEY}"\n'
        f'secret_access_key = "{SECRET_KEY}"\n'
        f'account_id = "{ACCOUNT}"\n'
    )
    database = Path(__file__).resolve().parent.parent / "vulnerability_db"  # image scans
    server = ProcessServer(
        workdir / "data",
        free_port(),
        ["--credentials", str(credentials), "--vulnerability-db", str(database)],
    )
    (workdir / "data").mkdir()
    server.start()
    assert server.log is not None
    return server, server.endpoint


def _stop(process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def tools() -> None:
    """The clients must be installed; `make test` installs them (scripts/install-test-deps)."""
    missing = [
        path
        for path in (DOCKER, DOCKERD, PODMAN, SKOPEO, "/bin/busybox")
        if not os.access(path, os.X_OK)
    ]
    if missing:
        pytest.fail(
            f"missing {', '.join(missing)}: run ./scripts/install-test-deps {DEBIAN_PACKAGES}"
        )


@pytest.fixture(scope="session")
def registry(tools: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    workdir = tmp_path_factory.mktemp("registry")
    server, upstream = _start_openecr(workdir)
    proxy = RecordingProxy(server.port)
    assert server.log is not None
    yield Registry(proxy, upstream, workdir, server.log)
    proxy.close()
    server.stop()


@pytest.fixture(autouse=True)
def _proxy_followed_every_exchange(registry: Registry) -> Iterator[None]:
    """The recording proxy parsed every HTTP exchange of the test (else its record is partial)."""
    before = len(registry.proxy.errors)
    yield
    assert registry.proxy.errors[before:] == []


# --- docker ---------------------------------------------------------------------------------


@dataclass
class Docker:
    """A private dockerd and a docker CLI bound to it (own socket, data root and config)."""

    root: Path
    process: subprocess.Popen[bytes] | None = None
    log: Path = field(init=False)
    daemon_args: list[str] = field(default_factory=list)  # more dockerd options
    daemon_env: dict[str, str] = field(default_factory=dict)  # more dockerd environment
    wrapper: list[str] = field(default_factory=list)  # a command that execs dockerd (unshare)

    def __post_init__(self) -> None:
        self.log = self.root / "dockerd.log"

    @property
    def env(self) -> dict[str, str]:
        return {
            "DOCKER_HOST": f"unix://{self.root / 'docker.sock'}",
            "DOCKER_CONFIG": str(self.root / "config"),
        }

    def __call__(
        self, *args: str, input: str | None = None, check: bool = True, config: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = self.env if config is None else {**self.env, "DOCKER_CONFIG": str(config)}
        return run([DOCKER, *args], input=input, env=env, check=check)

    def start(self) -> Docker:
        (self.root / "config").mkdir(parents=True)
        command = [
            *self.wrapper,
            DOCKERD,
            "--data-root",
            str(self.root / "data"),
            "--exec-root",
            str(self.root / "exec"),
            "--pidfile",
            str(self.root / "docker.pid"),
            "--host",
            self.env["DOCKER_HOST"],
            "--iptables=false",
            "--ip6tables=false",
            "--bridge=none",
            *self.daemon_args,
        ]
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                command,
                env={**os.environ, **self.daemon_env},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dockerd exited:\n{self.log.read_text()[-4000:]}")
            if self("version", check=False).returncode == 0:
                return self
            time.sleep(0.2)
        raise RuntimeError(f"dockerd did not start:\n{self.log.read_text()[-4000:]}")

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)
        shutil.rmtree(self.root / "data", ignore_errors=True)

    def login(self, registry: Registry, config: Path | None = None) -> str:
        return self(
            "login",
            "-u",
            "AWS",
            "--password-stdin",
            registry.host,
            input=registry.token,
            config=config,
        ).stdout


@pytest.fixture(scope="session")
def docker(
    tools: None, registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Docker]:
    """One dockerd for the session (loopback registries are insecure-trusted by default),
    logged in to the registry; stopped by PID at the end."""
    daemon = Docker(tmp_path_factory.mktemp("docker")).start()
    try:
        daemon.login(registry)
        yield daemon
    finally:
        daemon.stop()


def docker_load(docker: Docker, image: Image, reference: str, workdir: Path) -> None:
    archive = image.write_docker_archive(workdir / f"{uuid.uuid4().hex}.tar", reference)
    docker("load", "-i", str(archive))
    archive.unlink()


def pushed_digest(output: str) -> str:
    """The digest from `docker push`/`podman push` output (`...: digest: sha256:... size: N`)."""
    for line in output.splitlines():
        if "digest: sha256:" in line:
            return line.split("digest: ")[1].split()[0]
    raise AssertionError(f"no digest in push output:\n{output}")


# --- podman and skopeo -----------------------------------------------------------------------


def _runtime() -> list[str]:
    """podman's default OCI runtime, crun, refuses a hybrid cgroup layout (v1 controllers plus a
    cgroup2 ``unified`` mount: "cgroups in hybrid mode not supported"); runc (which docker.io
    brings) runs there, so it is used on such machines."""
    runc = shutil.which("runc")
    hybrid = Path("/sys/fs/cgroup/unified").is_mount()
    return ["--runtime", runc] if runc is not None and hybrid else []


@dataclass
class Podman:
    """Rootful podman with its own storage under the session's temporary directory."""

    root: Path

    @property
    def authfile(self) -> Path:
        return self.root / "auth.json"

    def __call__(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        base = [
            PODMAN,
            "--root",
            str(self.root / "storage"),
            "--runroot",
            str(self.root / "run"),
            "--tmpdir",
            str(self.root / "tmp"),
            "--storage-driver",
            "overlay",
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
            *_runtime(),
        ]
        return run(
            [*base, *args],
            input=input,
            check=check,
            env={"REGISTRY_AUTH_FILE": str(self.authfile)},
        )


@pytest.fixture(scope="session")
def podman(
    tools: None, registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Podman]:
    client = Podman(tmp_path_factory.mktemp("podman"))
    client(
        "login",
        "--tls-verify=false",
        "-u",
        "AWS",
        "--password-stdin",
        registry.host,
        input=registry.token,
    )
    yield client
    client("rmi", "--all", "--force", check=False)
    shutil.rmtree(client.root / "storage", ignore_errors=True)


@dataclass
class Skopeo:
    authfile: Path

    def __call__(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return run([SKOPEO, *args], input=input)

    def copy(self, source: str, destination: str, *extra: str) -> str:
        return self(
            "copy",
            "--authfile",
            str(self.authfile),
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            "--preserve-digests",
            *extra,
            source,
            destination,
        ).stdout

    def raw_manifest(self, reference: str) -> bytes:
        result = subprocess.run(
            [
                SKOPEO,
                "inspect",
                "--authfile",
                str(self.authfile),
                "--tls-verify=false",
                "--raw",
                reference,
            ],
            capture_output=True,
            check=False,
            timeout=120,
        )
        if result.returncode != 0:
            raise CommandFailed(f"skopeo inspect --raw {reference}: {result.stderr.decode()}")
        return result.stdout


@pytest.fixture(scope="session")
def skopeo(tools: None, registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Skopeo:
    client = Skopeo(tmp_path_factory.mktemp("skopeo") / "auth.json")
    client(
        "login",
        "--authfile",
        str(client.authfile),
        "--tls-verify=false",
        "-u",
        "AWS",
        "--password-stdin",
        registry.host,
        input=registry.token,
    )
    return client


def read_dir_image(directory: Path) -> tuple[bytes, dict[str, bytes]]:
    """The manifest and blobs of a skopeo ``dir:`` copy."""
    manifest = (directory / "manifest.json").read_bytes()
    parsed = json.loads(manifest)
    blobs = {}
    for descriptor in [parsed["config"], *parsed["layers"]]:
        digest = descriptor["digest"]
        blobs[digest] = (directory / digest.removeprefix("sha256:")).read_bytes()
    return manifest, blobs
