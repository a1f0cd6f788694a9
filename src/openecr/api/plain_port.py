"""The HTTP protocol of a plain-HTTP port: uvicorn's httptools protocol, which sends each
response's head with its first body bytes and says what a TLS handshake on the port is.

* uvicorn writes a response's status line and headers, then its body: two ``send`` system
  calls and two TCP segments for every small answer (uvloop writes at once). Here the head
  waits for the first body bytes and both go out in one ``writev`` (:class:`HeadWithBody`).
* docker, skopeo and buildah try HTTPS first, even on loopback; uvicorn answers each try with
  a 400 and logs ``Invalid HTTP request received.``. This protocol answers the same 400 (so the
  clients' fallback to plain HTTP is unchanged) and instead logs, once per client address, that
  a client tried TLS on this plain-HTTP port (later tries from that address at debug level).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

log = logging.getLogger("openecr.http")

_TOLD_LIMIT = 1024  # client addresses remembered per server (then forgotten all at once)


def is_tls_handshake(data: bytes) -> bool:
    """Whether ``data`` starts a TLS record of type handshake (TLS 1.0 to 1.3)."""
    return len(data) >= 3 and data[0] == 0x16 and data[1] == 0x03 and data[2] <= 0x04


def tls_notice(client: str) -> str:
    return (
        f"a client at {client} tried TLS (HTTPS) on this plain-HTTP port and got a 400: docker, "
        "skopeo and buildah try HTTPS first, then fall back to HTTP for loopback and insecure "
        "registries (harmless); --tls-cert and --tls-key serve HTTPS. Further tries from "
        f"{client} are logged at debug level"
    )


class HeldHeads:
    """The heads held in this turn of the event loop: all written, if still held, by one
    callback at the loop's next turn (one per turn, not one per response)."""

    __slots__ = ("_held", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._held: list[HeadWithBody] = []

    def add(self, head: HeadWithBody) -> None:
        held = self._held
        held.append(head)
        if len(held) == 1:
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        held, self._held = self._held, []
        for head in held:
            head.flush()


class HeadWithBody:
    """The connection's transport as one request cycle sees it. The cycle's first write once
    its response has started is the response's head: it is held, and goes out with the next
    write (the first body bytes) in one ``writelines`` when that comes in the same turn of the
    event loop (a small answer's body always does), else alone at the loop's next turn
    (:class:`HeldHeads`), or when the response completes or the cycle closes the connection,
    whichever is first. Every other write passes straight through (a ``100 Continue`` is
    written before the response starts), so bytes keep their order and a head never waits
    for a slow body."""

    __slots__ = ("_completed", "_cycle", "_head", "_heads", "_transport")

    def __init__(
        self, transport: asyncio.Transport, cycle: RequestResponseCycle, heads: HeldHeads
    ) -> None:
        self._heads = heads
        self._transport = transport
        self._cycle: RequestResponseCycle | None = cycle
        self._head: bytes | None = None
        self._completed: Callable[[], None] = cycle.on_response
        cycle.transport = self  # type: ignore[assignment]
        cycle.on_response = self.completed

    def write(self, data: bytes) -> None:
        head = self._head
        if head is not None:
            self._head = None
            self._transport.writelines((head, data))  # one writev
            return
        cycle = self._cycle
        if cycle is not None and cycle.response_started:
            self._cycle = None
            self._head = data
            self._heads.add(self)
            return
        self._transport.write(data)

    def flush(self) -> None:
        """Writes the head if it still waits (and the connection is still open: a client gone
        meanwhile gets nothing, as from uvicorn)."""
        head = self._head
        if head is not None:
            self._head = None
            if not self._transport.is_closing():
                self._transport.write(head)

    def completed(self) -> None:
        """The cycle's response is complete (a HEAD answer has no body to carry its head)."""
        self.flush()
        self._completed()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()


class PlainPortProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with each response's head sent with its body and TLS
    handshakes answered quietly (see the module)."""

    _started = False
    _heads: HeldHeads

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # one per server (its state is shared by its connections), like the TLS notices
        heads: HeldHeads | None = getattr(self.server_state, "openecr_held_heads", None)
        if heads is None:
            heads = HeldHeads(self.loop)
            self.server_state.openecr_held_heads = heads  # type: ignore[attr-defined]
        self._heads = heads

    def on_headers_complete(self) -> None:
        before = self.cycle
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle is not before:  # a request (not an upgrade)
            HeadWithBody(self.transport, cycle, self._heads)

    def data_received(self, data: bytes) -> None:
        if not self._started:
            self._started = True
            if is_tls_handshake(data):
                host = self.client[0] if self.client else "-"
                # one set per server (its state is shared by its connections)
                told: set[str] | None = getattr(self.server_state, "openecr_tls_told", None)
                if told is None:
                    told = set()
                    self.server_state.openecr_tls_told = told  # type: ignore[attr-defined]
                if host in told:
                    log.debug("a client at %s tried TLS on this plain-HTTP port again", host)
                else:
                    if len(told) >= _TOLD_LIMIT:
                        told.clear()
                    told.add(host)
                    log.warning("%s", tls_notice(host))
                self.send_400_response("This port serves plain HTTP, not TLS")
                return
        super().data_received(data)
