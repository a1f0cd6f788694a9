"""Clean shutdown (Ctrl-C, SIGTERM): once :meth:`Drain.start` is called, requests already
being answered finish, a request body still streaming in (a long upload) is ended early so its
part is dropped whole and its session stays resumable, and new requests get 503 with
``Connection: close``. Requests without a body or with a small one (:data:`SMALL_BODY`) are
not watched: they finish like the requests being answered. So the server stops within
moments, with no cancelled task to report."""

from __future__ import annotations

import asyncio
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

SHUTTING_DOWN = "The server is shutting down; retry the request"


class Drain:
    """The shutdown flag; :meth:`start` is called from the event loop's thread (a signal
    handler) or any thread."""

    def __init__(self) -> None:
        self.started = False
        self._event: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def event(self) -> asyncio.Event:
        if self._event is None:
            self._event = asyncio.Event()
            self._loop = asyncio.get_running_loop()
            if self.started:
                self._event.set()
        return self._event

    def start(self) -> None:
        self.started = True
        if self._event is not None and self._loop is not None:
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is self._loop:
                self._event.set()
            else:
                self._loop.call_soon_threadsafe(self._event.set)


def _unavailable(path: str) -> tuple[bytes, bytes]:
    if path.startswith("/v2"):
        doc = {"errors": [{"code": "UNAVAILABLE", "message": SHUTTING_DOWN, "detail": {}}]}
        return json.dumps(doc).encode(), b"application/json"
    doc2 = {"__type": "ServerException", "message": SHUTTING_DOWN}
    return json.dumps(doc2).encode(), b"application/x-amz-json-1.1"


# a body declared this long or shorter arrives with the request (at once, or nearly)
SMALL_BODY = 64 * 1024


def _small_body(scope: Scope) -> bool:
    """Whether the request has no body or a small declared one (HTTP/1: a body without a
    length is chunked). Such a request is answered without watching for the drain: racing
    each ``receive`` against it costs two tasks per request, more than a small call itself."""
    if scope.get("http_version") not in ("1.0", "1.1"):
        return False
    if scope["method"] in ("GET", "HEAD"):  # no endpoint reads the body of these
        return True
    declared = 0
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                return False
        elif name == b"transfer-encoding":
            return False
    return declared <= SMALL_BODY


class DrainingApp:
    """``app`` behind a :class:`Drain` (see the module docstring)."""

    def __init__(self, app: ASGIApp, drain: Drain) -> None:
        self.app = app
        self.drain = drain

    async def _refuse(self, scope: Scope, send: Send) -> None:
        body, content_type = _unavailable(scope.get("path", ""))
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", content_type),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                    (b"retry-after", b"1"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if self.drain.started:
            return await self._refuse(scope, send)
        if _small_body(scope):  # arrives with the request: nothing to end early, no watching
            return await self.app(scope, receive, send)
        stopping = self.drain.event()
        body_done = False
        started = False
        cut = False

        async def receive_until_drained() -> Message:
            nonlocal body_done, cut
            if body_done:
                return await receive()
            if stopping.is_set():
                cut = True
                return {"type": "http.disconnect"}
            waiting = asyncio.ensure_future(receive())
            stopped = asyncio.ensure_future(stopping.wait())
            done, _ = await asyncio.wait({waiting, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if waiting in done:
                stopped.cancel()
                message = waiting.result()
                if message["type"] != "http.request" or not message.get("more_body", False):
                    body_done = True
                return message
            waiting.cancel()
            cut = True
            return {"type": "http.disconnect"}

        async def send_tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, receive_until_drained, send_tracked)
        if cut and not started:  # the app saw the body end as a disconnect: say why
            await self._refuse(scope, send)
