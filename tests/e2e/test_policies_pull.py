"""Cross-account pulls by real container clients: account B's skopeo and docker pull from A's
repository exactly when A's repository policy allows B ``ecr:BatchGetImage`` and
``ecr:GetDownloadUrlForLayer``, and an explicit Deny refuses A's own user (docs/policies.md).

A cross-account pull names A's registry by host (``<A>.dkr.ecr.<region>.<domain>``), as on ECR.
No DNS name points at loopback here, so the client reaches the server through
:class:`ForwardProxy`, an HTTP forward proxy on 127.0.0.1 that hands every request to the
server with its ``Host`` intact (and refuses CONNECT, so the client falls back to plain HTTP and
nothing leaves the machine)."""

from __future__ import annotations

import base64
import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from conftest import InProcessServer, Server, free_port, upload_blob
from e2e.conftest import SKOPEO, Docker, run
from e2e.images import small_image
from test_iam_policy import policy, statement
from test_policies import A_ROOT, ALICE, BOB, PULL, A, B, as_, credentials_file, pushed

HOST = f"{A}.dkr.ecr.us-east-1.openecr.test"  # .test: a name that resolves nowhere


class ForwardProxy:
    """``HTTP_PROXY`` for clients: each connection carries one request (``Connection: close``),
    sent to ``127.0.0.1:<port>`` in origin form with its headers, ``Host`` included."""

    def __init__(self, port: int) -> None:
        self.upstream = port
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.hosts: list[str] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, rest = data.partition(b"\r\n\r\n")
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            method, target, version = request_line.split(" ")
            if method == "CONNECT":  # https: refused, the client falls back to http
                conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                return
            parts = urlsplit(target)
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            kept = [
                line
                for line in header_lines
                if line.split(":", 1)[0].strip().lower()
                not in ("connection", "proxy-connection", "keep-alive", "proxy-authorization")
            ]
            self.hosts += [
                line.split(":", 1)[1].strip()
                for line in kept
                if line.split(":", 1)[0].lower() == "host"
            ]
            forwarded = "\r\n".join([f"{method} {path} {version}", *kept, "Connection: close"])
            with socket.create_connection(("127.0.0.1", self.upstream)) as upstream:
                upstream.sendall(forwarded.encode("latin-1") + b"\r\n\r\n" + rest)
                pump = threading.Thread(target=_copy, args=(conn, upstream), daemon=True)
                pump.start()
                _copy(upstream, conn)

    def close(self) -> None:
        self.sock.close()


def _copy(source: socket.socket, sink: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("policies-e2e")
    server = InProcessServer(
        base / "data", free_port(), ["--credentials", str(credentials_file(base))]
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def proxy(secured: Server) -> Iterator[ForwardProxy]:
    found = ForwardProxy(secured.port)
    yield found
    found.close()


def manifest_bytes(digest: str, server: Server) -> bytes:
    found = as_(server, A_ROOT).batch_get_image(
        repositoryName="shared/app", imageIds=[{"imageDigest": digest}]
    )["images"][0]["imageManifest"]
    return str(found).encode()


def password(server: Server, principal: str) -> str:
    data = as_(server, principal).get_authorization_token()["authorizationData"][0]
    return base64.b64decode(data["authorizationToken"]).decode().partition(":")[2]


def skopeo_pull(
    server: Server, proxy: ForwardProxy, principal: str, name: str, into: Path
) -> tuple[bool, str]:
    """``skopeo copy`` of ``name:v1`` from A's registry as ``principal``: (ok, stderr)."""
    env = {
        "HTTP_PROXY": proxy.url,
        "HTTPS_PROXY": proxy.url,
        "http_proxy": proxy.url,
        "https_proxy": proxy.url,
        "NO_PROXY": "",
        "no_proxy": "",
    }
    done = run(
        [
            SKOPEO,
            "copy",
            "--src-tls-verify=false",
            "--src-creds",
            f"AWS:{password(server, principal)}",
            f"docker://{HOST}/{name}:v1",
            f"dir:{into}",
        ],
        env=env,
        check=False,
    )
    return done.returncode == 0, done.stderr


def test_skopeo_pulls_across_accounts_as_the_policy_says(
    secured: Server, proxy: ForwardProxy, tmp_path: Path
) -> None:
    owner = as_(secured, A_ROOT)
    name = "shared/app"
    owner.create_repository(repositoryName=name)
    digest, manifest = pushed(owner, name)

    ok, stderr = skopeo_pull(secured, proxy, BOB, name, tmp_path / "refused")
    assert not ok
    assert f"User: {BOB} is not authorized to perform: ecr:BatchGetImage" in stderr
    assert HOST in proxy.hosts  # the server saw A's registry host

    # the manifest alone is not enough: the layers need GetDownloadUrlForLayer
    owner.set_repository_policy(
        repositoryName=name,
        policyText=policy(statement(Principal={"AWS": BOB}, Action="ecr:BatchGetImage")),
    )
    ok, stderr = skopeo_pull(secured, proxy, BOB, name, tmp_path / "manifest-only")
    assert not ok
    assert "reading blob" in stderr and "403" in stderr  # skopeo does not print a blob's error

    owner.set_repository_policy(
        repositoryName=name, policyText=policy(statement(Principal={"AWS": BOB}, Action=PULL))
    )
    ok, stderr = skopeo_pull(secured, proxy, BOB, name, tmp_path / "pulled")
    assert ok, stderr
    layer = manifest["layers"][0]["digest"].removeprefix("sha256:")
    assert (tmp_path / "pulled" / layer).is_file()

    # an explicit Deny refuses a user of the owning account; the account's root still pulls
    owner.set_repository_policy(
        repositoryName=name,
        policyText=policy(
            statement(Principal={"AWS": BOB}, Action=PULL),
            statement(Effect="Deny", Principal={"AWS": ALICE}, Action="ecr:BatchGetImage"),
        ),
    )
    ok, stderr = skopeo_pull(secured, proxy, ALICE, name, tmp_path / "denied")
    assert not ok
    assert "with an explicit deny in a resource-based policy" in stderr
    ok, stderr = skopeo_pull(secured, proxy, A_ROOT, name, tmp_path / "owner")
    assert ok, stderr
    assert (tmp_path / "owner" / "manifest.json").read_bytes() == manifest_bytes(digest, secured)


def proxy_env(proxy: ForwardProxy) -> dict[str, str]:
    return {
        "HTTP_PROXY": proxy.url,
        "HTTPS_PROXY": proxy.url,
        "http_proxy": proxy.url,
        "https_proxy": proxy.url,
        "NO_PROXY": "",
        "no_proxy": "",
    }


@pytest.fixture(scope="module")
def proxied_docker(
    tools: None, proxy: ForwardProxy, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Docker]:
    """A dockerd of its own that reaches A's registry host through the forward proxy (plain
    HTTP: the host is an insecure registry)."""
    daemon = Docker(
        tmp_path_factory.mktemp("docker-policies"),
        daemon_args=["--insecure-registry", HOST],
        daemon_env=proxy_env(proxy),
    ).start()
    try:
        yield daemon
    finally:
        daemon.stop()


def test_docker_pulls_across_accounts_as_the_policy_says(
    secured: Server, proxied_docker: Docker
) -> None:
    owner = as_(secured, A_ROOT)
    name = "shared/docker"
    owner.create_repository(repositoryName=name)
    image = small_image("policies")
    for blob in image.blobs().values():
        upload_blob(owner, name, blob)
    owner.put_image(repositoryName=name, imageManifest=image.manifest.decode(), imageTag="v1")
    docker = proxied_docker
    docker("login", "-u", "AWS", "--password-stdin", HOST, input=password(secured, BOB))
    reference = f"{HOST}/{name}:v1"
    refused = docker("pull", reference, check=False)
    assert refused.returncode != 0
    assert f"User: {BOB} is not authorized to perform: ecr:BatchGetImage" in refused.stderr
    owner.set_repository_policy(
        repositoryName=name, policyText=policy(statement(Principal={"AWS": B}, Action=PULL))
    )
    pulled = docker("pull", reference)
    assert image.digest in pulled.stdout
    inspected = docker("image", "inspect", "--format", "{{.Id}}", reference).stdout.strip()
    assert inspected == image.config_digest
