"""What an operator sees of a running server: ``/healthz`` (liveness), ``/readyz`` (both stores
answer), ``/metrics`` (Prometheus), and one access log line per request.

:class:`Observed` wraps the whole app. For every HTTP request it notes the status, the body
bytes in and out and the duration, counts them in :class:`~openecr.service.metrics.Metrics`
by API and operation, and (unless the access log is off) writes one line to the
``openecr.access`` logger. The protocol apps leave the request's account (and, on ``/v2``,
the token's account) in the ASGI scope as ``openecr.account`` / ``openecr.principal``, and
the operation they routed the request to as ``openecr.operation`` (without it, the operation
is worked out here from the path and headers).

Text lines read::

    2026-12-03T05:40:00.123Z 127.0.0.1:50312 123456789012 AKID "POST /" BatchGetImage 200 98 2.1ms

time (UTC), client address, account, principal (the SigV4 access key id on the ECR API, the
token's account on ``/v2``, ``-`` when anonymous), method and path (no query string: signed
URLs carry their signature there), operation (the ECR operation, or a ``/v2`` endpoint's name
such as ``GetManifest``), status, response body bytes, duration. JSON lines carry the same
fields by name (plus ``bytes_in``).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Iterable
from time import gmtime, perf_counter, strftime, time
from typing import TextIO

import anyio.to_thread
import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openecr.api.ecr.operations import OPERATIONS
from openecr.api.oci.app import operation_name as oci_operation
from openecr.service.health import HealthService
from openecr.service.metrics import Metrics

ACCESS_LOG = logging.getLogger("openecr.access")

Endpoint = Callable[[Scope, Receive, Send], Awaitable[None]]
# time (to the second, milliseconds), client (host, port), account, principal, "method path",
# operation, status, bytes, duration
TEXT_LINE = '%s.%03dZ %s:%s %s %s "%s %s" %s %d %d %.1fms\n'
TEXT_LINE_NO_CLIENT = '%s.%03dZ - %s %s "%s %s" %s %d %d %.1fms\n'
_BODILESS = ("GET", "HEAD")


class AccessLogHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler ``openecr serve`` gives the ``openecr.access`` logger (stderr, the message
    alone). While it is the logger's only handler, :class:`Observed` writes lines to its stream
    directly: a log record per request would cost several times what the line does."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))
        self._fd = _descriptor(self.stream)
        self._pending: list[str] = []  # lines of this turn of the event loop

    def setStream(self, stream: TextIO) -> TextIO | None:
        previous = super().setStream(stream)
        self._fd = _descriptor(self.stream)
        return previous

    def write_line(self, line: str) -> None:
        """One line (ending in a newline). On an event loop's thread the lines of one turn of
        the loop are written together at its next turn (one ``write`` for the requests the
        turn answered); elsewhere at once."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._write(line)
            return
        self._pending.append(line)
        if len(self._pending) == 1:
            loop.call_soon(self._flush)

    def _flush(self) -> None:
        lines, self._pending = self._pending, []
        self._write("".join(lines))

    def flush(self) -> None:
        """Also writes the lines still waiting for the loop's next turn (logging calls this
        at exit)."""
        if self._pending:
            self._flush()
        super().flush()

    def _write(self, text: str) -> None:
        """``text`` written at once: straight to the stream's file descriptor when it has one
        (what is buffered in the stream was flushed first, so lines keep their order)."""
        try:
            if self._fd is None:
                self.stream.write(text)
                return
            data = text.encode("utf-8", "backslashreplace")
            while data:
                data = data[os.write(self._fd, data) :]
        except (OSError, ValueError):  # stderr closed or full: the request is served anyway
            pass


def _descriptor(stream: object) -> int | None:
    """``stream``'s file descriptor, its buffer flushed; None for a stream without one."""
    try:
        stream.flush()  # type: ignore[attr-defined]
        return int(stream.fileno())  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
        return None


def _access_writer() -> Callable[[str], None]:
    """Where access log lines (each ending in a newline) go: straight to the stream of an
    :class:`AccessLogHandler` that is ``openecr.access``'s only handler, else through the
    logger (tests capture it there)."""
    handlers = ACCESS_LOG.handlers
    if (
        len(handlers) == 1
        and isinstance(handlers[0], AccessLogHandler)
        and not ACCESS_LOG.propagate
    ):
        return handlers[0].write_line
    return lambda line: ACCESS_LOG.info("%s", line[:-1])


async def _respond(send: Send, status: int, body: bytes, content_type: str) -> None:
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _principal_of(authorization: bytes) -> str:
    """The access key id of a SigV4 ``Authorization`` header ("-" for anything else)."""
    _, found, rest = authorization.partition(b"Credential=")
    if not found:
        return "-"
    return rest.partition(b"/")[0][:128].decode("latin-1") or "-"


def _ecr_operation(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The ECR operation an ``X-Amz-Target`` header names ("Unknown" for none)."""
    for name, value in headers:
        if name == b"x-amz-target":
            target = value.decode("latin-1").rpartition(".")[2]
            return target if target in OPERATIONS else "Unknown"
    return "Unknown"


def _content_length(headers: Iterable[tuple[bytes, bytes]]) -> int:
    for name, value in headers:
        if name.lower() == b"content-length" and value.isdigit():
            return int(value)
    return 0


class Observed:
    """``app`` with the operator's endpoints in front and every request measured and logged.

    ``access_log`` is ``text``, ``json`` or ``off``; the ASGI lifespan goes to ``lifespan``
    (default: ``app``), so wrappers that act only on it stay off the path of every request."""

    def __init__(
        self,
        app: ASGIApp,
        health: HealthService,
        metrics: Metrics,
        access_log: str,
        lifespan: ASGIApp | None = None,
    ) -> None:
        self.app = app
        self.lifespan = app if lifespan is None else lifespan
        self.health = health
        self.metrics = metrics
        self._logging = access_log != "off"
        self._json = access_log == "json"
        self._count = metrics.count_request
        self.endpoints: dict[str, tuple[str, Endpoint]] = {
            "/healthz": ("Healthz", self.healthz),
            "/readyz": ("Readyz", self.readyz),
            "/metrics": ("Metrics", self.serve_metrics),
        }
        self._second = -1
        self._stamp = ""
        self._write = _access_writer()

    # --- the operator's endpoints ------------------------------------------------------------

    @staticmethod
    async def _refuse(scope: Scope, send: Send) -> bool:
        if scope["method"] in ("GET", "HEAD"):
            return False
        await _respond(send, 405, b'{"status":"method not allowed"}', "application/json")
        return True

    async def healthz(self, scope: Scope, receive: Receive, send: Send) -> None:
        """200 while the process serves requests; checks nothing else."""
        if not await self._refuse(scope, send):
            await _respond(send, 200, b'{"status":"ok"}', "application/json")

    async def readyz(self, scope: Scope, receive: Receive, send: Send) -> None:
        """200 when the metadata and blob stores both answer, else 503; the body says which."""
        if await self._refuse(scope, send):
            return
        checks = await anyio.to_thread.run_sync(self.health.readiness)
        ready = all(value == "ok" for value in checks.values())
        body = orjson.dumps({"status": "ready" if ready else "not ready", "checks": checks})
        await _respond(send, 200 if ready else 503, body, "application/json")

    async def serve_metrics(self, scope: Scope, receive: Receive, send: Send) -> None:
        if await self._refuse(scope, send):
            return
        body, content_type = await anyio.to_thread.run_sync(self.metrics.exposition)
        await _respond(send, 200, body, content_type)

    # --- every request ------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.lifespan(scope, receive, send)
        start = perf_counter()
        path = scope["path"]
        found = self.endpoints.get(path)
        app: Endpoint = self.app if found is None else found[1]
        # status, response body bytes, request body bytes, recorded, declared length
        state = [0, 0, 0, 0, 0]

        async def counting_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                state[2] += len(message.get("body", b""))
            return message

        async def counting_send(message: Message) -> None:
            kind = message["type"]
            if kind == "http.response.body":
                state[1] += len(message.get("body", b""))
                if not state[3] and not message.get("more_body", False):
                    # recorded before the client has the whole answer: a client's next
                    # request always finds this one counted and logged
                    state[3] = 1
                    self._record(scope, path, found, state, perf_counter() - start)
            elif kind == "http.response.start":
                state[0] = message["status"]
                if scope.get("extensions"):  # a pathsend sends a whole file of this length
                    state[4] = _content_length(message.get("headers", ()))
            elif kind == "http.response.pathsend":
                state[1] += state[4]
                state[3] = 1
                self._record(scope, path, found, state, perf_counter() - start)
            await send(message)

        try:
            # no endpoint reads the body of a GET or HEAD: nothing to count
            bodiless = scope["method"] in _BODILESS
            await app(scope, receive if bodiless else counting_receive, counting_send)
        except BaseException:
            if not state[0]:
                state[0] = 500
            raise
        finally:
            if not state[3]:  # no complete answer: an error, or the client went away
                self._record(scope, path, found, state, perf_counter() - start)

    def _record(
        self,
        scope: Scope,
        path: str,
        found: tuple[str, Endpoint] | None,
        state: list[int],
        seconds: float,
    ) -> None:
        method: str = scope["method"]
        if found is not None:
            api, operation = "ops", found[0]
        elif path == "/":
            api = "ecr"
            operation = scope.get("openecr.operation") or _ecr_operation(scope["headers"])
        elif path.startswith("/v2") and (len(path) == 3 or path[3] == "/"):
            api = "oci"
            operation = scope.get("openecr.operation") or oci_operation(method, path)
        elif path.startswith("/openecr/layers/"):
            api, operation = "ecr", "DownloadLayer"
        elif path == "/openecr/health":
            api, operation = "ops", "Health"
        else:
            api, operation = "other", "Unknown"
        status, bytes_out, bytes_in = state[0], state[1], state[2]
        self._count((api, operation, status, seconds, bytes_in, bytes_out))
        if not self._logging:
            return
        principal = scope.get("openecr.principal")
        if principal is None:
            principal = "-"
            if path == "/":  # no verified principal: the key the request names
                for name, value in scope["headers"]:
                    if name == b"authorization":
                        principal = _principal_of(value)
        client = scope.get("client")
        account = scope.get("openecr.account", "-")
        now = time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._stamp = strftime("%Y-%m-%dT%H:%M:%S", gmtime(second))
        millisecond = int((now - second) * 1000)
        if not path.isprintable() or '"' in path:  # one line, unambiguous
            path = path.encode("unicode_escape").decode("ascii").replace('"', '\\"')
        if self._json:
            line = orjson.dumps(
                {
                    "time": f"{self._stamp}.{millisecond:03d}Z",
                    "client": f"{client[0]}:{client[1]}" if client else "-",
                    "account": account,
                    "principal": principal,
                    "method": method,
                    "path": path,
                    "api": api,
                    "operation": operation,
                    "status": status,
                    "bytes": bytes_out,
                    "bytes_in": bytes_in,
                    "duration_ms": round(seconds * 1000, 3),
                }
            ).decode()
            self._write(line + "\n")
        else:  # one %-format: cheaper than f-strings and concatenation
            ms = seconds * 1000
            fields = (account, principal, method, path, operation, status, bytes_out, ms)
            if client:
                self._write(TEXT_LINE % (self._stamp, millisecond, client[0], client[1], *fields))
            else:
                self._write(TEXT_LINE_NO_CLIENT % (self._stamp, millisecond, *fields))
