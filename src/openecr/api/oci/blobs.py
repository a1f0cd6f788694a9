"""``/v2/<name>/blobs/<digest>``: GET (with ``Range``), HEAD, DELETE.

Blobs stream from the blob service one piece at a time (2 MiB from the filesystem store: a
thread hop per piece, so larger pieces cost fewer hops, while each download holds only a few
pieces in flight). Nothing holds a blob whole in memory. With ``--blob-redirect`` (the default
with S3) a GET is a 307 to the blob store's presigned URL instead (as distribution does), and
the client fetches the bytes, ``Range`` included, from the store. Under a server that
implements ASGI's ``http.response.pathsend`` (``openecr serve --server granian``), a whole
blob of the filesystem store is handed to the server by path, and never read into Python.
"""

from __future__ import annotations

import functools

import anyio.to_thread
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from openecr.api.oci import render
from openecr.api.oci.common import Context, echo, parse_digest
from openecr.domain.digest import Digest
from openecr.errors import RangeNotSatisfiable
from openecr.service.blobs import BlobContent

OCTET_STREAM = "application/octet-stream"
REDIRECT_SECONDS = 1200  # how long a redirect's presigned URL works (distribution: 20 minutes)


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """``(start, end)`` (end exclusive) of a single byte range; None for several ranges (the
    whole blob is served, as RFC 9110 allows). Raises RangeNotSatisfiable for anything else
    that is not a satisfiable ``bytes=`` range."""
    unit, _, spec = header.partition("=")
    spec = spec.strip()
    if unit.strip().lower() != "bytes" or not spec:
        raise _unsatisfiable(header, size)
    if "," in spec:
        return None
    first, dash, last = (part.strip() for part in spec.partition("-"))
    if not dash or (first and not first.isdigit()) or (last and not last.isdigit()):
        raise _unsatisfiable(header, size)
    if not first:  # the last N bytes
        if not last or int(last) == 0 or size == 0:
            raise _unsatisfiable(header, size)
        return max(size - int(last), 0), size
    start = int(first)
    end = min(int(last) + 1, size) if last else size
    if start >= size or end <= start:
        raise _unsatisfiable(header, size)
    return start, end


def _unsatisfiable(header: str, size: int) -> RangeNotSatisfiable:
    return RangeNotSatisfiable(
        f"The range '{echo(header)}' cannot be served from a blob of {size} bytes"
    )


async def get(ctx: Context, name: str, value: str) -> Response:
    """GET and HEAD; both are plain reads on the event loop until the body streams."""
    digest = parse_digest(value)
    head = ctx.request.method == "HEAD"
    action = "BatchCheckLayerAvailability" if head else "GetDownloadUrlForLayer"
    registry_id = ctx.authorize(name, action)
    blobs = ctx.registry.blobs
    wanted = ctx.request.headers.get("range")
    if blobs.may_fetch(registry_id, name):  # a pull-through cache may ask its upstream
        permit = functools.partial(ctx.permit, name)
        if not head and wanted is None:  # a first pull streams while it is cached
            content = await anyio.to_thread.run_sync(
                blobs.stream_first_pull, registry_id, name, digest, permit
            )
            if content is not None:
                return _whole(content)
        blob = await anyio.to_thread.run_sync(blobs.stat, registry_id, name, digest, permit)
    else:
        blob = blobs.stat(registry_id, name, digest)
    headers = {
        "Docker-Content-Digest": blob.digest,
        "ETag": f'"{blob.digest}"',
        "Accept-Ranges": "bytes",
    }
    span = None
    if wanted is not None:
        try:
            span = parse_range(wanted, blob.size)
        except RangeNotSatisfiable as error:
            return render.error_response(
                error, headers={**headers, "Content-Range": f"bytes */{blob.size}"}
            )
    if head:
        if span is not None:
            return _head(206, headers, span, blob.size)
        return _head(200, headers, (0, blob.size), blob.size)
    if ctx.registry.settings.blob_redirect:
        url = ctx.registry.blobs.presigned_url(digest, REDIRECT_SECONDS)
        if url is not None:
            location = {"Location": url, "Docker-Content-Digest": blob.digest}
            return Response(None, 307, location)
    if span is None and _can_pathsend(ctx):
        path = ctx.registry.blobs.local_path(blob)
        if path is not None:
            headers["Content-Length"] = str(blob.size)
            return PathResponse(path, headers)
    content = ctx.registry.blobs.read(blob, span)  # raises BlobNotFound up front
    start, end = content.start, content.end
    headers["Content-Length"] = str(end - start)
    status = 200
    if span is not None:
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{blob.size}"
    return StreamingResponse(content.chunks, status, headers, media_type=OCTET_STREAM)


def _whole(content: BlobContent) -> Response:
    """The whole blob (streamed from the store, or from an upstream as it is cached)."""
    blob = content.blob
    headers = {
        "Docker-Content-Digest": blob.digest,
        "ETag": f'"{blob.digest}"',
        "Accept-Ranges": "bytes",
        "Content-Length": str(blob.size),
    }
    return StreamingResponse(content.chunks, 200, headers, media_type=OCTET_STREAM)


def _can_pathsend(ctx: Context) -> bool:
    extensions = ctx.request.scope.get("extensions") or {}
    return "http.response.pathsend" in extensions


class PathResponse(Response):
    """A whole file sent by the server itself (ASGI's ``http.response.pathsend``, which
    granian implements): its bytes never pass through Python."""

    def __init__(self, path: str, headers: dict[str, str]) -> None:
        super().__init__(None, 200, headers, media_type=OCTET_STREAM)
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = {"type": "http.response.start", "status": 200, "headers": self.raw_headers}
        await send(start)
        await send({"type": "http.response.pathsend", "path": self.path})


def _head(status: int, headers: dict[str, str], span: tuple[int, int], size: int) -> Response:
    start, end = span
    extra = {"Content-Length": str(end - start)}
    if status == 206:
        extra["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    return Response(None, status, {**headers, **extra}, media_type=OCTET_STREAM)


async def delete(ctx: Context, name: str, value: str) -> Response:
    """Remove the blob from the repository (202); its bytes stay while others hold it."""
    digest: Digest = parse_digest(value)
    registry_id = ctx.authorize(name, "BatchDeleteImage")
    await anyio.to_thread.run_sync(ctx.registry.blobs.unlink, registry_id, name, digest)
    return render.empty(202)
