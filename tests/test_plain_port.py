"""The plain-HTTP port's protocol sends each response's head with its first body bytes: one
write where uvicorn makes two. Its writes are read from a recording transport under uvicorn's
own protocol machinery, then the same answers are checked through real sockets (pipelining,
HEAD, ``Expect: 100-continue``) against a real server."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from types import SimpleNamespace
from typing import Any

import httpx
import uvicorn
from starlette.types import Receive, Scope, Send
from uvicorn.server import ServerState

from conftest import ServerFactory
from openecr.api.plain_port import HeadWithBody, HeldHeads, PlainPortProtocol


class RecordingTransport(asyncio.Transport):
    """Records each write (``write`` as one part, ``writelines`` as its parts)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[list[bytes]] = []
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 5000), "peername": ("127.0.0.1", 40000)}.get(
            name, default
        )

    def write(self, data: Any) -> None:
        if self.closed:  # as uvloop's, once closed
            raise RuntimeError("unable to perform operation: the handler is closed")
        self.writes.append([bytes(data)])

    def writelines(self, list_of_data: Any) -> None:
        if self.closed:
            raise RuntimeError("unable to perform operation: the handler is closed")
        self.writes.append([bytes(part) for part in list_of_data])

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """``/small``: one body; ``/stream``: three chunks; ``/echo``: the request body back;
    ``/fail``: the head, then an exception."""
    path = scope["path"]
    if path == "/echo":
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        chunks = [body]
    else:
        chunks = {
            "/small": [b"hello"],
            "/slow": [b"late"],
            "/stream": [b"a" * 10, b"b" * 20, b"c" * 30],
        }.get(path, [b""])
    length = str(sum(map(len, chunks))).encode()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", length)]}
    )
    if path == "/fail":
        raise RuntimeError("after the head")
    if path == "/slow":  # the body comes some turns of the loop later
        await asyncio.sleep(0.05)
    for i, chunk in enumerate(chunks):
        await send({"type": "http.response.body", "body": chunk, "more_body": i < len(chunks) - 1})


def exchange(request: bytes) -> RecordingTransport:
    """``request`` (bytes as a client sends them) fed to the plain port's protocol, the app run
    to completion; the transport that recorded the protocol's writes."""
    loop = asyncio.new_event_loop()
    try:
        config = uvicorn.Config(app, log_config=None, lifespan="off")
        protocol = PlainPortProtocol(
            config=config, server_state=ServerState(), app_state={}, _loop=loop
        )
        transport = RecordingTransport()
        protocol.connection_made(transport)

        async def drive() -> None:
            protocol.data_received(request)
            for _ in range(20):  # the app's task, then its sends
                await asyncio.sleep(0)
            await asyncio.sleep(0.1)  # /slow's body
            protocol.connection_lost(None)

        loop.run_until_complete(drive())
        return transport
    finally:
        loop.close()


def test_a_small_answer_is_one_write_of_head_and_body() -> None:
    transport = exchange(b"GET /small HTTP/1.1\r\nHost: x\r\n\r\n")
    assert len(transport.writes) == 1
    head, body = transport.writes[0]
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and head.endswith(b"\r\n\r\n")
    assert body == b"hello"


def test_a_streamed_answer_sends_its_head_with_the_first_chunk() -> None:
    transport = exchange(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
    assert [len(parts) for parts in transport.writes] == [2, 1, 1]
    assert [parts[-1] for parts in transport.writes] == [b"a" * 10, b"b" * 20, b"c" * 30]


def test_a_head_does_not_wait_for_a_slow_body() -> None:
    """The head of an answer whose body comes turns of the loop later (a blob streamed from
    an upstream) goes out at the next turn, alone."""
    transport = exchange(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    assert len(transport.writes) == 2
    assert transport.writes[0][0].startswith(b"HTTP/1.1 200 OK") and len(transport.writes[0]) == 1
    assert transport.writes[1] == [b"late"]


def test_a_held_head_of_a_connection_closed_meanwhile_is_dropped() -> None:
    """The connection closes in the turn its head was held: the next turn's flush writes
    nothing (a closed transport refuses writes) and the other heads held with it still go."""
    loop = asyncio.new_event_loop()
    try:
        heads = HeldHeads(loop)
        gone, alive = RecordingTransport(), RecordingTransport()
        held = []
        for transport in (gone, alive):
            cycle = SimpleNamespace(response_started=False, on_response=lambda: None)
            held.append(HeadWithBody(transport, cycle, heads))  # type: ignore[arg-type]
            cycle.response_started = True
        for head in held:
            head.write(b"HTTP/1.1 200 OK\r\n\r\n")
        gone.closed = True
        loop.run_until_complete(asyncio.sleep(0))
        assert gone.writes == [] and alive.writes == [[b"HTTP/1.1 200 OK\r\n\r\n"]]
    finally:
        loop.close()


def test_a_head_answer_goes_out_when_the_response_completes() -> None:
    transport = exchange(b"HEAD /small HTTP/1.1\r\nHost: x\r\n\r\n")
    assert len(transport.writes) == 1 and len(transport.writes[0]) == 1
    assert b"content-length: 5\r\n" in transport.writes[0][0]
    assert transport.writes[0][0].endswith(b"\r\n\r\n")


def test_100_continue_is_not_held() -> None:
    transport = exchange(
        b"POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\nping"
    )
    assert transport.writes[0] == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    head, body = transport.writes[1]
    assert head.startswith(b"HTTP/1.1 200 OK") and body == b"ping"


def test_a_failing_app_still_sends_its_head_before_the_connection_closes() -> None:
    transport = exchange(b"GET /fail HTTP/1.1\r\nHost: x\r\n\r\n")
    assert [parts[0][:12] for parts in transport.writes] == [b"HTTP/1.1 200"]
    assert transport.closed


def test_pipelined_requests_are_answered_in_order() -> None:
    transport = exchange(
        b"GET /small HTTP/1.1\r\nHost: x\r\n\r\n"
        b"HEAD /small HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    sent = b"".join(b"".join(parts) for parts in transport.writes)
    answers = sent.split(b"HTTP/1.1 200 OK\r\n")[1:]
    assert len(answers) == 3
    assert answers[0].endswith(b"\r\n\r\nhello") and answers[1].endswith(b"\r\n\r\n")
    assert answers[2].endswith(b"a" * 10 + b"b" * 20 + b"c" * 30)


# --- the same through real sockets -----------------------------------------------------------


def read_answer(sock: socket.socket, buffer: bytearray, head_only: bool = False) -> bytes:
    """One HTTP answer (head, then a Content-Length body unless ``head_only``) from ``sock``."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        assert chunk, "connection closed mid-answer"
        buffer += chunk
    end = buffer.index(b"\r\n\r\n") + 4
    head = bytes(buffer[:end])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    if head_only or head.startswith(b"HTTP/1.1 100 "):
        length = 0
    while len(buffer) < end + length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed mid-body"
        buffer += chunk
    answer = bytes(buffer[: end + length])
    del buffer[: end + length]
    return answer


def test_pipelined_get_head_get_on_a_real_server(make_server: ServerFactory) -> None:
    server = make_server()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
            b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        buffer = bytearray()
        first = read_answer(sock, buffer)
        second = read_answer(sock, buffer, head_only=True)
        third = read_answer(sock, buffer)
    assert first.startswith(b"HTTP/1.1 200 ") and first.endswith(b'{"status":"ok"}')
    assert second.startswith(b"HTTP/1.1 200 ") and second.endswith(b"\r\n\r\n")
    assert (
        third.startswith(b"HTTP/1.1 200 ") and b"docker-distribution-api-version" in third.lower()
    )
    assert not buffer


def test_an_upload_waits_for_100_continue_on_a_real_server(make_server: ServerFactory) -> None:
    server = make_server()
    server.client().create_repository(repositoryName="plain/port")
    data = b"layer bytes " * 1000
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        buffer = bytearray()
        sock.sendall(
            b"POST /v2/plain/port/blobs/uploads/ HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
        )
        started = read_answer(sock, buffer)
        assert started.startswith(b"HTTP/1.1 202 "), started
        location = next(
            line.split(b":", 1)[1].strip()
            for line in started.split(b"\r\n")
            if line.lower().startswith(b"location:")
        )
        separator = b"&" if b"?" in location else b"?"
        sock.sendall(
            b"PUT " + location + separator + b"digest=" + digest.encode() + b" HTTP/1.1\r\n"
            b"Host: x\r\nExpect: 100-continue\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Length: " + str(len(data)).encode() + b"\r\n\r\n"
        )
        assert read_answer(sock, buffer) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(data)
        created = read_answer(sock, buffer)
    assert created.startswith(b"HTTP/1.1 201 "), created
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(f"GET /v2/plain/port/blobs/{digest} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        fetched = read_answer(sock, bytearray())
    assert fetched.endswith(b"\r\n\r\n" + data)


def test_answers_name_no_server(make_server: ServerFactory) -> None:
    """Like ECR and distribution, no ``server`` header (uvicorn's would be ``uvicorn``)."""
    server = make_server()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = read_answer(sock, bytearray())
    head = answer.split(b"\r\n\r\n", 1)[0].lower()
    assert b"\r\ndate: " in head and b"\r\nserver:" not in head
    ecr = httpx.post(
        server.endpoint,
        headers={
            "X-Amz-Target": "AmazonEC2ContainerRegistry_V20150921.DescribeRepositories",
            "Content-Type": "application/x-amz-json-1.1",
        },
        content=b"{}",
    )
    assert ecr.status_code == 200 and "server" not in ecr.headers
