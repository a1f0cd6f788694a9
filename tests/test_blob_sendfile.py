"""Whole blobs under uvicorn (the default server) go from file to socket with ``os.sendfile``
(``openecr.api.plain_port``: ASGI's ``http.response.pathsend``): the bytes, keep-alive, clients
that go away mid-download, downloads in parallel, and the ranges that stay streamed."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from conftest import Server, ServerFactory
from openecr.api import plain_port

SIZE = 24 * 1024 * 1024 + 3  # larger than any socket buffer: the send waits for the client


@pytest.fixture
def served(make_server: ServerFactory) -> tuple[Server, str, bytes]:
    server = make_server("--create-on-push")
    data = os.urandom(SIZE)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with httpx.Client(base_url=server.endpoint, timeout=60) as client:
        started = client.post("/v2/sendfile/app/blobs/uploads/")
        assert started.status_code == 202, started.text
        done = client.put(started.headers["location"], params={"digest": digest}, content=data)
        assert done.status_code == 201, done.text
    return server, digest, data


def test_a_whole_blob_arrives_byte_for_byte_on_a_kept_alive_connection(
    served: tuple[Server, str, bytes],
) -> None:
    server, digest, data = served
    with httpx.Client(base_url=server.endpoint, timeout=60) as client:
        for _ in range(2):  # the second on the same connection: the first ended cleanly
            got = client.get(f"/v2/sendfile/app/blobs/{digest}")
            assert got.status_code == 200
            assert got.headers["content-length"] == str(SIZE)
            assert got.headers["docker-content-digest"] == digest
            assert hashlib.sha256(got.content).hexdigest() == digest.removeprefix("sha256:")
        head = client.head(f"/v2/sendfile/app/blobs/{digest}")
        assert head.status_code == 200 and head.headers["content-length"] == str(SIZE)
        ranged = client.get(f"/v2/sendfile/app/blobs/{digest}", headers={"Range": "bytes=5-9"})
        assert ranged.status_code == 206 and ranged.content == data[5:10]


def test_downloads_in_parallel_each_get_the_whole_blob(served: tuple[Server, str, bytes]) -> None:
    server, digest, _data = served

    def download() -> str:
        with httpx.Client(base_url=server.endpoint, timeout=60) as client:
            return hashlib.sha256(
                client.get(f"/v2/sendfile/app/blobs/{digest}").content
            ).hexdigest()

    with ThreadPoolExecutor(4) as pool:
        assert set(pool.map(lambda _: download(), range(4))) == {digest.removeprefix("sha256:")}


def test_a_client_that_goes_away_mid_download_frees_its_sender(
    served: tuple[Server, str, bytes],
) -> None:
    server, digest, _data = served
    host, port = server.endpoint.removeprefix("http://").split(":")
    before = threading.active_count()
    for _ in range(3):
        with socket.create_connection((host, int(port))) as conn:
            conn.sendall(
                f"GET /v2/sendfile/app/blobs/{digest} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
            )
            assert conn.recv(65536).startswith(b"HTTP/1.1 200")
        # closed with most of the blob unread
    with httpx.Client(base_url=server.endpoint, timeout=60) as client:
        got = client.get(f"/v2/sendfile/app/blobs/{digest}")
        assert hashlib.sha256(got.content).hexdigest() == digest.removeprefix("sha256:")
        assert client.get("/healthz").status_code == 200
    assert threading.active_count() <= before + 3  # at most the pool's idle threads


def test_send_file_stops_when_asked_and_refuses_a_short_file(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(b"x" * 10)
    left, right = socket.socketpair()
    left.setblocking(False)
    with left, right:
        stop = threading.Event()
        plain_port.send_file(left.fileno(), str(path), 10, stop)
        assert right.recv(100) == b"x" * 10
        with pytest.raises(OSError, match="ended at 10 of 11"):
            plain_port.send_file(left.fileno(), str(path), 11, stop)
        stop.set()
        with pytest.raises(ConnectionAbortedError):
            plain_port.send_file(left.fileno(), str(path), 10, stop)
