"""Pull-through first pulls that stream: the upstream is a small registry on loopback
(:class:`Upstream`, a ``ThreadingHTTPServer`` speaking the read side of the OCI Distribution
API) that can hold back the tail of a blob until the test lets it go, break off in the middle
of one, or send bytes that do not hash to the digest. The client is httpx against the real
app (``/v2``): it gets the first bytes of a layer before the upstream sent the last, the layer
is cached once (concurrent first pulls included), and a transfer that breaks stores nothing
and breaks the client's transfer too."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import Server, ServerFactory

DOCKER_V2 = "application/vnd.docker.distribution.manifest.v2+json"
HEAD = 3 * 1024 * 1024  # what the upstream sends before it holds back (or breaks off)
TAIL = 1024 * 1024
HOLD_LIMIT = 60.0  # a deadlock guard: a held-back tail is sent anyway after this long


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Upstream:
    """A registry on loopback holding one image ``app:v1`` (a config and one layer).

    ``mode`` says how the layer is sent: ``whole``; ``hold`` (the head, then the tail once
    ``release`` is set); ``die`` (the head, then the connection is closed); ``corrupt`` (as
    many bytes as the layer, but other ones); ``down`` (503). ``blob_gets`` counts GETs."""

    def __init__(self) -> None:
        self.layer = os.urandom(HEAD + TAIL)
        self.config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
        self.manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": DOCKER_V2,
                "config": {
                    "mediaType": "application/vnd.docker.container.image.v1+json",
                    "size": len(self.config),
                    "digest": sha256(self.config),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                        "size": len(self.layer),
                        "digest": sha256(self.layer),
                    }
                ],
            }
        ).encode()
        self.mode = "whole"
        self.release = threading.Event()
        self.tail_sent = threading.Event()
        self.blob_gets: Counter[str] = Counter()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def layer_digest(self) -> str:
        return sha256(self.layer)

    def close(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for key, value in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(key, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def do_HEAD(self) -> None:
                self.do_GET()

            def do_GET(self) -> None:
                path = self.path
                if path == "/v2/":
                    return self._answer(200, b"{}", {"Content-Type": "application/json"})
                if path == "/v2/app/manifests/v1" or path.endswith(sha256(upstream.manifest)):
                    headers = {
                        "Content-Type": DOCKER_V2,
                        "Docker-Content-Digest": sha256(upstream.manifest),
                    }
                    return self._answer(200, upstream.manifest, headers)
                if path == f"/v2/app/blobs/{sha256(upstream.config)}":
                    return self._answer(200, upstream.config, {})
                if path == f"/v2/app/blobs/{upstream.layer_digest}":
                    upstream.blob_gets[self.command] += 1
                    return self._layer()
                return self._answer(404, b'{"errors":[{"code":"NAME_UNKNOWN"}]}', {})

            def _layer(self) -> None:
                mode, layer = upstream.mode, upstream.layer
                if mode == "down":
                    return self._answer(503, b"", {})
                if mode == "corrupt":
                    return self._answer(200, bytes(len(layer)), {})
                if mode == "whole" or self.command == "HEAD":
                    return self._answer(200, layer, {})
                self.send_response(200)
                self.send_header("Content-Length", str(len(layer)))
                self.end_headers()
                self.wfile.write(layer[:HEAD])
                self.wfile.flush()
                if mode == "die":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                upstream.release.wait(HOLD_LIMIT)
                upstream.tail_sent.set()
                self.wfile.write(layer[HEAD:])

        return Handler


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    registry = Upstream()
    yield registry
    registry.close()


@pytest.fixture
def mirror(make_server: ServerFactory, upstream: Upstream) -> Server:
    server = make_server()
    server.client().create_pull_through_cache_rule(
        ecrRepositoryPrefix="up", upstreamRegistryUrl=upstream.url
    )
    return server


def layer_available(mirror: Server, digest: str) -> bool:
    checked = mirror.client().batch_check_layer_availability(
        repositoryName="up/app", layerDigests=[digest]
    )
    return bool(checked["layers"]) and checked["layers"][0]["layerAvailability"] == "AVAILABLE"


def leftovers(data_dir: Path, size: int) -> list[Path]:
    """Files of the blob store (blobs, uploads) at least ``size`` bytes long."""
    return [
        p
        for p in data_dir.rglob("*")
        if p.is_file()
        and p.stat().st_size >= size
        and {"blobs", "uploads"} & set(p.relative_to(data_dir).parts)
    ]


def test_first_pull_streams_while_it_is_cached(mirror: Server, upstream: Upstream) -> None:
    upstream.mode = "hold"
    url = f"{mirror.endpoint}/v2/up/app/blobs/{upstream.layer_digest}"
    with httpx.Client(timeout=HOLD_LIMIT * 2) as http:
        manifest = http.get(f"{mirror.endpoint}/v2/up/app/manifests/v1")
        assert manifest.content == upstream.manifest
        with http.stream("GET", url) as answer:
            assert answer.status_code == 200
            assert answer.headers["content-length"] == str(len(upstream.layer))
            assert answer.headers["docker-content-digest"] == upstream.layer_digest
            pieces = answer.iter_bytes()
            received = [next(pieces)]
            # the client has bytes while the upstream still holds back the tail
            assert not upstream.tail_sent.is_set()
            upstream.release.set()
            received.extend(pieces)
    assert b"".join(received) == upstream.layer
    assert upstream.tail_sent.is_set()
    # cached: served by the mirror from now on, verified
    assert layer_available(mirror, upstream.layer_digest)
    upstream.mode = "down"
    again = httpx.get(url)
    assert again.status_code == 200 and again.content == upstream.layer
    assert upstream.blob_gets == {"GET": 1}


def test_concurrent_first_pulls_of_a_layer_fetch_it_once(
    mirror: Server, upstream: Upstream
) -> None:
    upstream.mode = "hold"
    url = f"{mirror.endpoint}/v2/up/app/blobs/{upstream.layer_digest}"
    others: list[bytes] = []

    def pull() -> None:
        with httpx.Client(timeout=HOLD_LIMIT * 2) as http:
            others.append(http.get(url).content)

    with httpx.Client(timeout=HOLD_LIMIT * 2) as http, http.stream("GET", url) as first:
        pieces = first.iter_bytes()
        received = [next(pieces)]
        threads = [threading.Thread(target=pull) for _ in range(3)]
        for thread in threads:
            thread.start()
        upstream.release.set()
        received.extend(pieces)
    for thread in threads:
        thread.join()
    assert b"".join(received) == upstream.layer
    assert others == [upstream.layer] * 3
    assert upstream.blob_gets == {"GET": 1}


@pytest.mark.parametrize("mode", ["die", "corrupt"])
def test_a_broken_transfer_stores_nothing(mirror: Server, upstream: Upstream, mode: str) -> None:
    """The upstream stops mid-blob (or sends bytes that do not hash to the digest): the
    client's transfer breaks, nothing is cached; once the upstream is back, the pull works."""
    upstream.mode = mode
    url = f"{mirror.endpoint}/v2/up/app/blobs/{upstream.layer_digest}"
    received = bytearray()
    with httpx.Client(timeout=30) as http:
        manifest = http.get(f"{mirror.endpoint}/v2/up/app/manifests/v1")
        assert manifest.content == upstream.manifest
        with pytest.raises(httpx.HTTPError), http.stream("GET", url) as answer:
            assert answer.status_code == 200
            for piece in answer.iter_bytes():
                received.extend(piece)
        assert len(received) < len(upstream.layer)
        assert not layer_available(mirror, upstream.layer_digest)
        assert leftovers(mirror.data_dir, HEAD // 2) == []
        upstream.mode = "whole"
        again = http.get(url)
        assert again.status_code == 200 and again.content == upstream.layer
    assert layer_available(mirror, upstream.layer_digest)
    assert upstream.blob_gets == {"GET": 2}


def test_an_upstream_that_cannot_start_the_transfer(mirror: Server, upstream: Upstream) -> None:
    upstream.mode = "down"
    answer = httpx.get(f"{mirror.endpoint}/v2/up/app/blobs/{upstream.layer_digest}")
    assert answer.status_code == 502 and answer.json()["errors"][0]["code"] == "UNKNOWN"
    missing = httpx.get(f"{mirror.endpoint}/v2/up/app/blobs/sha256:{'1' * 64}")
    assert missing.status_code == 404  # the upstream has none: nothing was cached
    assert missing.json()["errors"][0]["code"] == "NAME_UNKNOWN"
