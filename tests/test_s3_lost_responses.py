"""The S3 blob driver when the store's answer to a write is lost: a loopback proxy in front of
the session's SeaweedFS passes each conditional PUT of an upload session's control object to
SeaweedFS, which stores it, and then closes the connection without the answer. botocore retries;
the retry's condition fails on the driver's own write, which must count as written (a busy
store losing answers made concurrent pushes fail with "Another request is writing to this
upload")."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest

from openecr.backends.s3 import S3BlobDriver
from openecr.domain.digest import Digest
from openecr.errors import InvalidLayerPart

pytestmark = pytest.mark.slow  # SeaweedFS is a process


class AnswerLosingProxy:
    """Forwards HTTP to ``upstream``; the first ``lose`` conditional PUTs of a ``state.json``
    reach the upstream, but their answers are dropped with the connection."""

    def __init__(self, upstream: str, lose: int) -> None:
        target = urlsplit(upstream)
        self.lose = lose
        self.lost: list[str] = []
        lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                connection = http.client.HTTPConnection(target.netloc, timeout=60)
                connection.request(self.command, self.path, body, dict(self.headers.items()))
                answer = connection.getresponse()
                data = answer.read()
                connection.close()
                conditional = "If-Match" in self.headers or "If-None-Match" in self.headers
                if self.command == "PUT" and self.path.split("?")[0].endswith("/state.json"):
                    with lock:
                        drop = conditional and len(proxy.lost) < proxy.lose
                        if drop:
                            proxy.lost.append(self.headers.get("If-Match") or "create")
                    if drop:
                        self.close_connection = True
                        return
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in {"transfer-encoding", "connection", "content-length"}:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> AnswerLosingProxy:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy(s3_env: dict[str, str]) -> Iterator[AnswerLosingProxy]:
    with AnswerLosingProxy(s3_env["AWS_ENDPOINT_URL_S3"], lose=3) as running:
        yield running


def test_a_session_whose_control_writes_lose_their_answers_commits(
    proxy: AnswerLosingProxy, s3_blob_store: str
) -> None:
    driver = S3BlobDriver.from_url(s3_blob_store, endpoint_url=proxy.endpoint, path_style=True)
    data = b"layer bytes " * 1000
    state = driver.begin()  # its creation's answer is lost
    writer = driver.writer(state)  # taking the session: lost
    writer.write([data])
    state = writer.finish()  # the new state: lost
    assert proxy.lost[0] == "create" and len(proxy.lost) == 3
    assert state.size == len(data)
    digest = Digest.of(data)
    driver.commit(state, digest)
    assert b"".join(driver.open(digest, 0, None)) == data
    assert list(driver.list_uploads()) == []


def test_a_second_writer_is_still_refused_while_the_first_holds_the_session(
    proxy: AnswerLosingProxy, s3_blob_store: str
) -> None:
    """Counting a refused write as ours only when the store holds exactly our state keeps the
    lease: another writer's attempt on a held session is refused."""
    driver = S3BlobDriver.from_url(s3_blob_store, endpoint_url=proxy.endpoint, path_style=True)
    state = driver.begin()
    first = driver.writer(state)
    with pytest.raises(InvalidLayerPart, match="Another request is writing to this upload"):
        driver.writer(state)
    first.write([b"abc"])
    assert first.finish().size == 3
