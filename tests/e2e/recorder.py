"""A recording reverse proxy on 127.0.0.1: clients talk to it, it forwards every byte unchanged
to the registry and parses both directions with h11 on the side, so tests can see exactly what
a real client sent (upload requests, mounts, the manifest bytes of a push) whatever server runs.

Parsing never alters or delays forwarding beyond the parse itself; a stream h11 cannot follow
is marked in ``errors`` and still forwarded.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import h11

KEEP_BODY = 4 << 20  # request bodies up to this size are kept whole (manifests, configs)


@dataclass
class Exchange:
    method: str
    target: str
    headers: dict[str, str]
    body_size: int = 0
    body: bytes | None = None  # once the request is complete; None too if over KEEP_BODY
    status: int | None = None
    response_headers: dict[str, str] = field(default_factory=dict)

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(urlsplit(self.target).query).items()}

    def __str__(self) -> str:
        return f"{self.method} {self.target} ({self.body_size} bytes) -> {self.status}"


def _headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, value in raw:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        found[key] = f"{found[key]}, {text}" if key in found else text
    return found


class _Connection:
    """Mirrors one TCP connection into two h11 state machines (as server and as client)."""

    def __init__(self, recorder: RecordingProxy) -> None:
        self.recorder = recorder
        self.requests = h11.Connection(h11.SERVER, max_incomplete_event_size=1 << 20)
        self.responses = h11.Connection(h11.CLIENT, max_incomplete_event_size=1 << 20)
        self.lock = threading.Lock()
        self.broken = False
        self.seen = False
        self.receiving: Exchange | None = None  # the request whose body is arriving
        self.body = bytearray()  # its body so far, while under KEEP_BODY
        self.awaiting: list[Exchange] = []  # requests awaiting their response, oldest first

    def feed_request_bytes(self, data: bytes) -> None:
        with self.lock:
            if self.broken:
                return
            if not self.seen and data.startswith(b"\x16\x03"):
                # A TLS ClientHello: clients with TLS verification off try HTTPS first.
                self.broken = True
                self.recorder.tls_attempts += 1
                return
            self.seen = True
            try:
                self.requests.receive_data(data)
                self._drain_requests()
            except Exception as error:  # never let parsing stop the forwarding
                self._break(f"request stream: {error!r}")

    def feed_response_bytes(self, data: bytes) -> None:
        with self.lock:
            if self.broken:
                return
            try:
                self.responses.receive_data(data)
                self._drain_responses()
            except Exception as error:  # never let parsing stop the forwarding
                self._break(f"response stream: {error!r}")

    def _break(self, why: str) -> None:
        self.broken = True
        self.recorder.errors.append(why)

    def _drain_requests(self) -> None:
        while True:
            event = self.requests.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Request):
                exchange = Exchange(
                    event.method.decode(), event.target.decode(), _headers(event.headers)
                )
                self.receiving = exchange
                self.awaiting.append(exchange)
                self.recorder.record(exchange)
                self.responses.send(event)
            elif isinstance(event, h11.Data):
                assert self.receiving is not None
                exchange = self.receiving
                exchange.body_size += len(event.data)
                if exchange.body_size <= KEEP_BODY:
                    self.body.extend(event.data)
                self.responses.send(event)
            elif isinstance(event, h11.EndOfMessage):
                assert self.receiving is not None
                self.receiving.body = (
                    bytes(self.body) if self.receiving.body_size <= KEEP_BODY else None
                )
                self.body.clear()
                self.responses.send(event)
                self._next_cycle()
            elif isinstance(event, h11.ConnectionClosed):
                return

    def _drain_responses(self) -> None:
        while True:
            event = self.responses.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.InformationalResponse):
                self.requests.send(event)
            elif isinstance(event, h11.Response):
                exchange = self.awaiting[0]
                exchange.status = event.status_code
                exchange.response_headers = _headers(event.headers)
                self.requests.send(event)
            elif isinstance(event, h11.Data):
                self.requests.send(event)
            elif isinstance(event, h11.EndOfMessage):
                self.requests.send(event)
                self.awaiting.pop(0)
                self._next_cycle()
            elif isinstance(event, h11.ConnectionClosed):
                return

    def _next_cycle(self) -> None:
        done = (h11.DONE, h11.DONE)
        states = (self.requests.our_state, self.requests.their_state)
        if states == done and (self.responses.our_state, self.responses.their_state) == done:
            self.requests.start_next_cycle()
            self.responses.start_next_cycle()
            # Events h11 held back while the previous cycle was finishing.
            self._drain_requests()
            self._drain_responses()


class RecordingProxy:
    """Listens on 127.0.0.1:<port> and forwards to 127.0.0.1:<upstream_port>."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.exchanges: list[Exchange] = []
        self.errors: list[str] = []  # streams h11 could not follow (none expected)
        self.tls_attempts = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._sockets: set[socket.socket] = set()
        self._closed = False
        self._thread = threading.Thread(target=self._accept, name="e2e-proxy", daemon=True)
        self._thread.start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def record(self, exchange: Exchange) -> None:
        with self._lock:
            self.exchanges.append(exchange)

    def mark(self) -> int:
        """A position in the record; ``since(mark)`` lists what came after it."""
        with self._lock:
            return len(self.exchanges)

    def since(self, mark: int) -> list[Exchange]:
        with self._lock:
            return list(self.exchanges[mark:])

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets.update((client, upstream))
            connection = _Connection(self)
            pending = [2]  # both directions must end before the sockets close
            for source, sink, feed in (
                (client, upstream, connection.feed_request_bytes),
                (upstream, client, connection.feed_response_bytes),
            ):
                threading.Thread(
                    target=self._pump, args=(source, sink, feed, pending), daemon=True
                ).start()

    def _pump(
        self,
        source: socket.socket,
        sink: socket.socket,
        feed: Callable[[bytes], None],
        pending: list[int],
    ) -> None:
        try:
            while True:
                data = source.recv(1 << 16)
                if not data:
                    sink.shutdown(socket.SHUT_WR)
                    break
                feed(data)  # before forwarding: a response can never outrun its request
                sink.sendall(data)
        except OSError:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        with self._lock:
            pending[0] -= 1
            last = pending[0] == 0
            if last:
                self._sockets.difference_update((source, sink))
        if last:
            source.close()
            sink.close()

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
