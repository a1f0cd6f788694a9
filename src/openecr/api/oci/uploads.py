"""``/v2/<name>/blobs/uploads/``: monolithic, chunked and single-POST uploads, status, cancel
and cross-repository mounts, on the same upload service as ECR's layer API.

Bodies stream into the blob store's append in batches (see :func:`stream_part`); the digest
is computed as they stream and checked on completion. A failed part is dropped whole, a failed
completion ends the session: nothing partial ever becomes a visible blob.
"""

from __future__ import annotations

import contextlib
import re

import anyio
import anyio.to_thread
from starlette.responses import Response

from openecr.api.oci import render
from openecr.api.oci.common import Context, echo, parse_digest, stream_part
from openecr.domain import names
from openecr.domain.digest import Digest
from openecr.domain.model import BlobInfo
from openecr.errors import (
    DigestInvalid,
    InvalidLayerPart,
    LayerPartSizeMismatch,
    OciCode,
    OpenEcrError,
)
from openecr.service.blobs import BlobService

_CONTENT_RANGE = re.compile(r"(?:bytes[ =])?\s*([0-9]+)-([0-9]+)(?:/(?:[0-9]+|\*))?")


def upload_url(name: str, upload_id: str) -> str:
    return f"/v2/{name}/blobs/uploads/{upload_id}"


def blob_url(name: str, digest: str) -> str:
    return f"/v2/{name}/blobs/{digest}"


def progress_headers(name: str, upload_id: str, size: int) -> dict[str, str]:
    """Where the upload continues and what it holds: ``Range: 0-<last byte>`` (``0-0`` when
    empty, as the reference registry says it)."""
    return {
        "Location": upload_url(name, upload_id),
        "Range": f"0-{max(size - 1, 0)}",
        "Docker-Upload-UUID": upload_id,
        "Blob-Upload-Session-ID": upload_id,
    }


def created(name: str, blob: BlobInfo) -> Response:
    headers = {"Location": blob_url(name, blob.digest), "Docker-Content-Digest": blob.digest}
    return render.empty(201, headers)


def parse_content_range(value: str) -> tuple[int, int]:
    """``(first, last)`` byte of a ``Content-Range`` (``<first>-<last>``, inclusive); raises
    InvalidLayerPart (416)."""
    match = _CONTENT_RANGE.fullmatch(value.strip())
    if match is None or int(match.group(2)) < int(match.group(1)):
        raise InvalidLayerPart(
            f"The Content-Range '{echo(value)}' is not of the form <first byte>-<last byte>"
        )
    return int(match.group(1)), int(match.group(2))


def part_bounds(ctx: Context) -> tuple[int | None, int | None]:
    """Where the body says it starts and how long it says it is (``Content-Range`` and
    ``Content-Length``); raises InvalidLayerPart (416) or LayerPartSizeMismatch (400)."""
    start = length = None
    content_range = ctx.request.headers.get("content-range")
    if content_range is not None:
        first, last = parse_content_range(content_range)
        start, length = first, last - first + 1
    declared = ctx.content_length()
    if declared is not None:
        if length is not None and declared != length:
            raise LayerPartSizeMismatch(
                f"Content-Length {declared} does not match Content-Range '{content_range}'"
            )
        length = declared
    return start, length


async def start(ctx: Context, name: str, _ref: str) -> Response:
    """POST: a mount (``mount=&from=``), a single-request upload (``digest=``), or a session."""
    registry_id = ctx.authorize(name, "InitiateLayerUpload")
    layers = ctx.registry.blobs
    query = ctx.request.query_params
    mount, source = query.get("mount"), query.get("from")
    if (
        mount is not None
        and source is not None
        and names.is_repository_name(source)
        # reading the source is a layer download: without it, an ordinary upload session
        and ctx.allowed(source, "GetDownloadUrlForLayer")
    ):
        wanted = Digest.try_parse(mount)
        if wanted is not None:
            found = await ctx.push(
                registry_id, name, lambda: layers.mount(registry_id, name, wanted, source)
            )
            if found is not None:
                return created(name, found)
    if "digest" in query:
        digest = parse_digest(query["digest"])
        _, length = part_bounds(ctx)
        session = await ctx.push(registry_id, name, lambda: layers.initiate(registry_id, name))
        try:
            part = layers.open_part(registry_id, name, session.id)
            await stream_part(ctx.request, part, length)
            blob = await anyio.to_thread.run_sync(
                layers.complete, registry_id, name, session.id, digest
            )
        except BaseException:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(_discard, layers, registry_id, name, session.id)
            raise
        return created(name, blob)
    session = await ctx.push(registry_id, name, lambda: layers.initiate(registry_id, name))
    return render.empty(202, progress_headers(name, session.id, 0))


def _discard(layers: BlobService, registry_id: str, name: str, upload_id: str) -> None:
    """End an upload that failed, if it is still open."""
    with contextlib.suppress(OpenEcrError):
        layers.cancel(registry_id, name, upload_id)


async def _append(ctx: Context, registry_id: str, name: str, upload_id: str) -> int | Response:
    """Stream the body onto the upload and return its new size; an out-of-order or malformed
    part answers 416 with the upload's progress, so the client can resume from there."""
    layers = ctx.registry.blobs
    try:
        first, length = part_bounds(ctx)
        part = layers.open_part(registry_id, name, upload_id, start=first)
    except InvalidLayerPart as error:
        if error.oci_code is not OciCode.RANGE_INVALID:
            raise
        size = layers.upload_size(registry_id, name, upload_id)
        return render.error_response(error, headers=progress_headers(name, upload_id, size))
    return await stream_part(ctx.request, part, length)


async def patch(ctx: Context, name: str, upload_id: str) -> Response:
    registry_id = ctx.authorize(name, "UploadLayerPart")
    outcome = await _append(ctx, registry_id, name, upload_id)
    if isinstance(outcome, Response):
        return outcome
    return render.empty(202, progress_headers(name, upload_id, outcome))


async def put(ctx: Context, name: str, upload_id: str) -> Response:
    """Complete an upload with ``digest=``, the body (if any) being its last part."""
    registry_id = ctx.authorize(name, "CompleteLayerUpload")
    value = ctx.request.query_params.get("digest")
    if value is None:
        raise DigestInvalid("The digest query parameter is required to complete an upload")
    digest = parse_digest(value)
    layers = ctx.registry.blobs
    if ctx.content_length() != 0 or ctx.request.headers.get("content-range") is not None:
        outcome = await _append(ctx, registry_id, name, upload_id)
        if isinstance(outcome, Response):
            return outcome
    blob = await anyio.to_thread.run_sync(layers.complete, registry_id, name, upload_id, digest)
    return created(name, blob)


async def status(ctx: Context, name: str, upload_id: str) -> Response:
    registry_id = ctx.authorize(name, "UploadLayerPart")
    size = ctx.registry.blobs.upload_size(registry_id, name, upload_id)
    return render.empty(204, progress_headers(name, upload_id, size))


async def cancel(ctx: Context, name: str, upload_id: str) -> Response:
    registry_id = ctx.authorize(name, "UploadLayerPart")
    await anyio.to_thread.run_sync(ctx.registry.blobs.cancel, registry_id, name, upload_id)
    return render.empty(204)
