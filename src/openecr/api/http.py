"""The ASGI application: the ECR JSON API on ``POST /`` and signed layer downloads.

``create_app`` is a factory; nothing here holds global state.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping

import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from openecr.api.ecr import protocol
from openecr.api.oci import OciApp
from openecr.domain.digest import Digest
from openecr.errors import OpenEcrError, RequestTooLarge
from openecr.ports.blobs import BlobStore
from openecr.service.registry import Caller, Registry

log = logging.getLogger("openecr.http")

# (method, path, query string, headers, body) -> the caller's account; raises AuthError.
# Without one (no credentials configured), every request acts in the default account.
Authenticator = Callable[[str, str, str, Mapping[str, str], bytes], str]


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(f"The request body exceeds the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge(f"The request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _ecr_error(error: OpenEcrError) -> Response:
    rendered = protocol.error_response(error, str(uuid.uuid4()))
    return _ecr_response(rendered)


def _ecr_response(rendered: protocol.Response) -> Response:
    headers = {"x-amzn-RequestId": rendered.request_id, **rendered.headers}
    return Response(rendered.body, rendered.status, headers, media_type=protocol.CONTENT_TYPE)


def create_app(
    registry: Registry, blobs: BlobStore, authenticate: Authenticator | None = None
) -> Starlette:
    """The whole HTTP surface of one registry process."""

    async def ecr_api(request: Request) -> Response:
        try:
            body = await _read_body(request, protocol.MAX_BODY)
            if authenticate is None:
                account = registry.settings.default_account
            else:
                headers = {k.lower(): v for k, v in request.headers.items()}
                # off the event loop: checking a signature hashes the whole body (up to 32 MiB)
                account = await anyio.to_thread.run_sync(
                    authenticate,
                    request.method,
                    request.url.path,
                    request.url.query,
                    headers,
                    body,
                )
        except OpenEcrError as error:
            return _ecr_error(error)
        caller = Caller(
            account=account,
            host=request.headers.get("host", "localhost"),
            scheme=request.url.scheme,
            authenticated=registry.settings.authenticate,
        )
        target = request.headers.get("x-amz-target")
        if protocol.runs_inline(target):
            rendered = protocol.handle(registry, caller, target, body)
        else:
            rendered = await anyio.to_thread.run_sync(
                protocol.handle, registry, caller, target, body
            )
        return _ecr_response(rendered)

    async def download_layer(request: Request) -> Response:
        params = request.path_params
        path = request.url.path
        query = request.query_params
        ok = registry.tokens.check_path(path, query.get("expires", ""), query.get("signature", ""))
        digest = Digest.try_parse(params["digest"])
        if not ok or digest is None:
            return JSONResponse(
                {
                    "__type": "AccessDeniedException",
                    "message": "The download URL is invalid or expired",
                },
                status_code=403,
            )
        try:
            await anyio.to_thread.run_sync(
                registry.layers.find, params["registry"], params["name"], str(digest)
            )
        except OpenEcrError as error:
            return JSONResponse({"__type": error.ecr_type, "message": error.message}, 404)
        local = blobs.local_path(digest)
        if local is not None:
            return FileResponse(local, media_type="application/octet-stream")
        return StreamingResponse(blobs.open(digest), media_type="application/octet-stream")

    async def health(_request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    routes = [
        Route("/", ecr_api, methods=["POST"]),
        Route(
            "/openecr/layers/{registry:str}/{name:path}/{digest:str}",
            download_layer,
            methods=["GET"],
        ),
        Route("/openecr/health", health, methods=["GET"]),
    ]
    # the OCI Distribution API: every method, every path under /v2 (names contain "/")
    oci = OciApp(registry, blobs)
    routes += [Route("/v2", oci), Route("/v2/{path:path}", oci)]
    return Starlette(routes=routes)
