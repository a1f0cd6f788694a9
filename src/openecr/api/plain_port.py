"""The HTTP protocol of a plain-HTTP port: uvicorn's, which says what a TLS handshake on it
is, and sends whole files from the kernel.

docker, skopeo and buildah try HTTPS first, even on loopback; uvicorn answers each try with a
400 and logs ``Invalid HTTP request received.``. This protocol answers the same 400 (so the
clients' fallback to plain HTTP is unchanged) and instead logs, once per client address, that
a client tried TLS on this plain-HTTP port (later tries from that address at debug level).

It also implements ASGI's ``http.response.pathsend`` (a whole file as the response body), which
uvicorn does not: once the headers are on the wire, a worker thread hands the file to the
socket with ``os.sendfile``, so its bytes never pass through Python and the event loop is free
meanwhile (uvloop, uvicorn's default loop, has no ``loop.sendfile``). Should the headers still
wait in the transport's buffer, the file is read and written through the transport instead.
"""

from __future__ import annotations

import asyncio
import logging
import os
import select
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

log = logging.getLogger("openecr.http")

PATHSEND = "http.response.pathsend"
# threads that send files (each download holds one while it lasts; more wait their turn)
SENDERS = ThreadPoolExecutor(max_workers=64, thread_name_prefix="openecr-sendfile")
SENDFILE_PIECE = 8 * 1024 * 1024  # the most one sendfile call is asked to send
COPY_PIECE = 1024 * 1024  # the read size when the file goes through the transport


def send_file(socket_fd: int, path: str, size: int, stop: threading.Event) -> None:
    """Send the first ``size`` bytes of ``path`` to the non-blocking socket ``socket_fd``
    (blocking this thread, not the loop). Raises OSError when the client goes away, the file
    is shorter, or ``stop`` is set."""
    with open(path, "rb") as handle:
        poller = select.poll()
        poller.register(socket_fd, select.POLLOUT)
        offset = 0
        while offset < size:
            if stop.is_set():
                raise ConnectionAbortedError("the response was abandoned")
            try:
                sent = os.sendfile(
                    socket_fd, handle.fileno(), offset, min(size - offset, SENDFILE_PIECE)
                )
            except BlockingIOError:
                poller.poll(1000)  # room in the socket's buffer, or a look at ``stop``
                continue
            if sent == 0:
                raise OSError(f"{path} ended at {offset} of {size} bytes")
            offset += sent


async def _pathsend(
    cycle: RequestResponseCycle, send: Callable[[Any], Awaitable[None]], path: str
) -> None:
    """The whole body of ``cycle``'s response from the file ``path`` (see the module)."""
    if cycle.disconnected:
        return
    if not cycle.response_started or cycle.response_complete or cycle.chunked_encoding:
        raise RuntimeError(f"{PATHSEND} must follow http.response.start with a Content-Length")
    transport = cycle.transport
    size = cycle.expected_content_length
    loop = asyncio.get_running_loop()
    if cycle.scope["method"] == "HEAD" or size == 0:
        await send({"type": "http.response.body", "body": b""})
        return
    socket = transport.get_extra_info("socket")
    if socket is None or transport.get_write_buffer_size():  # the headers are not all out
        await _copy(send, path, size, loop)
        return
    stop = threading.Event()
    try:
        await loop.run_in_executor(SENDERS, send_file, socket.fileno(), path, size, stop)
    except asyncio.CancelledError:
        stop.set()
        raise
    except OSError as error:  # the client went away, or the file did
        log.debug("sending %s stopped: %s", path, error)
        cycle.disconnected = True
        transport.close()
        return
    cycle.expected_content_length = 0
    await send({"type": "http.response.body", "body": b""})  # completes the response


async def _copy(
    send: Callable[[Any], Awaitable[None]], path: str, size: int, loop: asyncio.AbstractEventLoop
) -> None:
    with open(path, "rb") as handle:
        left = size
        while left > 0:
            chunk = await loop.run_in_executor(SENDERS, handle.read, min(left, COPY_PIECE))
            if not chunk:
                raise OSError(f"{path} ended {left} bytes short")
            left -= len(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": left > 0})


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


class PlainPortProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with TLS handshakes answered quietly and
    ``http.response.pathsend`` (see the module)."""

    _started = False

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["extensions"] = {PATHSEND: {}}

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is None or cycle.scope is not self.scope:  # an upgrade: no new cycle
            return
        plain_send = cycle.send

        async def send(message: Any) -> None:
            if message["type"] == PATHSEND:
                await _pathsend(cycle, plain_send, message["path"])
            else:
                await plain_send(message)

        cycle.send = send  # type: ignore[method-assign]  # run_asgi looks it up when it runs

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
