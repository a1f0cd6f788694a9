"""The ASGI application: the ECR JSON API on ``POST /``, the OCI API under ``/v2``, signed
layer downloads and the web page under ``/ui`` (a browser's ``GET /`` is sent there).

``create_app`` is a factory; nothing here holds global state. The two APIs are bare ASGI apps
reached by a path test before any framework code runs (they are the hot paths); Starlette
serves the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openecr.api import layer_urls, ui
from openecr.api.ecr import protocol
from openecr.api.ecr.operations import OPERATIONS
from openecr.api.oci import OciApp
from openecr.api.sigv4 import request_region
from openecr.domain.digest import Digest
from openecr.domain.iam_policy import principal_account
from openecr.errors import AccessDenied, OpenEcrError, RequestTooLarge, UnknownOperation
from openecr.service.registry import Caller, Registry

log = logging.getLogger("openecr.http")

# (method, path, query string, headers, body) -> the caller's principal ARN (an IAM or STS ARN,
# whose account the request acts in); raises AuthError. Without one (no credentials configured),
# every request is the default account's root.
Authenticator = Callable[[str, str, str, Mapping[str, str], bytes], str]


class _Disconnected(Exception):
    """The client went away before its request body arrived."""


async def _read_body(receive: Receive, declared: str | None, limit: int) -> bytes:
    """The request body; raises RequestTooLarge past ``limit`` bytes, _Disconnected."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(f"The request body exceeds the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge(f"The request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


_CONTENT_TYPE = protocol.CONTENT_TYPE.encode()


async def _send_ecr(send: Send, rendered: protocol.Response) -> None:
    headers = [
        (b"content-type", _CONTENT_TYPE),
        (b"content-length", str(len(rendered.body)).encode()),
        (b"x-amzn-requestid", rendered.request_id.encode()),
    ]
    if rendered.headers:
        headers += [(k.lower().encode(), v.encode()) for k, v in rendered.headers.items()]
    await send({"type": "http.response.start", "status": rendered.status, "headers": headers})
    await send({"type": "http.response.body", "body": rendered.body})


def _method_not_allowed(method: str) -> protocol.Response:
    error = UnknownOperation(f"The method {method} is not supported on /")
    rendered = protocol.error_response(error, protocol.new_request_id())
    return protocol.Response(
        405, rendered.body, rendered.request_id, {**rendered.headers, "Allow": "POST"}
    )


def _download_error(error: OpenEcrError, status: int) -> Response:
    """An ECR error body (rendered as the ECR API renders it) for a layer download URL."""
    rendered = protocol.error_response(error, protocol.new_request_id())
    headers = {**rendered.headers, "x-amzn-RequestId": rendered.request_id}
    return Response(rendered.body, status, headers, media_type="application/json")


class EcrEndpoint:
    """``POST /``: the ECR JSON API (AWS JSON 1.1) as a bare ASGI app. Other methods on ``/``
    answer 405 with an ECR error body."""

    def __init__(self, registry: Registry, authenticate: Authenticator | None) -> None:
        self.registry = registry
        self.authenticate = authenticate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            await _send_ecr(send, _method_not_allowed(scope["method"]))
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        registry = self.registry
        try:
            body = await _read_body(receive, headers.get("content-length"), protocol.MAX_BODY)
            principal: str | None = None
            if self.authenticate is None:
                account = registry.settings.default_account
            else:
                # off the event loop: checking a signature hashes the whole body (up to 32 MiB)
                principal = await anyio.to_thread.run_sync(
                    self.authenticate,
                    scope["method"],
                    scope["path"],
                    scope["query_string"].decode("latin-1"),
                    headers,
                    body,
                )
                account = principal_account(principal)
                scope["openecr.principal"] = principal  # for the access log
            scope["openecr.account"] = account
            # after the signature check, whose errors come first (it checks the region too)
            region = request_region(headers, registry.settings.region)
        except _Disconnected:
            return
        except OpenEcrError as error:
            await _send_ecr(send, protocol.error_response(error, protocol.new_request_id()))
            return
        caller = Caller(
            account=account,
            host=headers.get("host", "localhost"),
            scheme=scope.get("scheme", "http"),
            region=region,
            principal=principal,
        )
        target = headers.get("x-amz-target")
        operation = (target or "").rpartition(".")[2]
        scope["openecr.operation"] = operation if operation in OPERATIONS else "Unknown"
        # a pull that may fetch from a pull-through cache's upstream waits off the event loop
        try:
            inline = protocol.runs_inline(target) and not registry.images.may_fetch(
                registry.settings.registry_key(account, region)
            )
        except OpenEcrError:  # (a database that is down): the handler meets it and answers it
            inline = False
        if inline:
            rendered = protocol.handle(registry, caller, target, body)
        else:
            rendered = await anyio.to_thread.run_sync(
                protocol.handle, registry, caller, target, body
            )
        await _send_ecr(send, rendered)


async def _to_ui(send: Send) -> None:
    """A browser's ``GET /``: 303 to the web page."""
    headers = [(b"location", f"{ui.PREFIX}/".encode()), (b"content-length", b"0")]
    await send({"type": "http.response.start", "status": 303, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


class _Front:
    """Sends ``/`` to the ECR API (a browser's GET to the web page), ``/v2...`` to the OCI
    API, ``/ui...`` to the web page, the rest to ``other``."""

    def __init__(
        self, ecr: ASGIApp, oci: ASGIApp, other: ASGIApp, page: ASGIApp | None = None
    ) -> None:
        self.ecr = ecr
        self.oci = oci
        self.other = other
        self.page = page

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if path == "/":
                if (
                    self.page is not None
                    and scope["method"] in ("GET", "HEAD")
                    and ui.wants_html(scope["headers"])
                ):
                    return await _to_ui(send)
                return await self.ecr(scope, receive, send)
            if path == "/v2" or path.startswith("/v2/"):
                return await self.oci(scope, receive, send)
            if self.page is not None and (path == ui.PREFIX or path.startswith(f"{ui.PREFIX}/")):
                return await self.page(scope, receive, send)
        await self.other(scope, receive, send)


def create_app(
    registry: Registry, authenticate: Authenticator | None = None, *, page: ASGIApp | None = None
) -> ASGIApp:
    """The whole HTTP surface of one registry process; ``page`` is the web page (``/ui``)."""

    async def download_layer(request: Request) -> Response:
        params = request.path_params
        path = request.url.path
        query = request.query_params
        ok = registry.tokens.check_path(path, query.get("expires", ""), query.get("signature", ""))
        digest = Digest.try_parse(params["digest"])
        if not ok or digest is None:
            return _download_error(AccessDenied("The download URL is invalid or expired"), 403)
        try:
            blob = await anyio.to_thread.run_sync(
                registry.blobs.find, params["registry"], params["name"], digest
            )
            content = registry.blobs.read(blob)
        except OpenEcrError as error:
            return _download_error(error, 404)
        headers = {"Content-Length": str(blob.size)}
        return StreamingResponse(content.chunks, 200, headers, "application/octet-stream")

    async def health(_request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    routes = [
        Route(layer_urls.ROUTE, download_layer, methods=["GET"]),
        Route("/openecr/health", health, methods=["GET"]),
    ]
    return _Front(
        EcrEndpoint(registry, authenticate), OciApp(registry), Starlette(routes=routes), page
    )
