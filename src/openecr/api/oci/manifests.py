"""``/v2/<name>/manifests/<reference>``: GET, HEAD, PUT, DELETE by tag or digest."""

from __future__ import annotations

import functools

import anyio.to_thread
from starlette.responses import Response

from openecr.api.oci import render
from openecr.api.oci.common import Context, echo, parse_digest
from openecr.domain import mediatypes as mt
from openecr.domain import names
from openecr.domain.digest import Digest
from openecr.domain.model import ImageId
from openecr.errors import ManifestTooLarge, TagInvalid

MAX_MANIFEST = 4 * 1024 * 1024  # the spec's floor; larger pushes answer 413


def parse_reference(reference: str) -> tuple[str | None, Digest | None]:
    """``(tag, None)`` or ``(None, digest)``; raises TagInvalid / DigestInvalid."""
    if ":" in reference:
        return None, parse_digest(reference)
    if not names.is_tag(reference):
        raise TagInvalid(
            f"The reference '{echo(reference)}' is neither a digest nor a tag matching "
            f"'{names.TAG_PATTERN}' of at most {names.TAG_MAX} characters"
        )
    return reference, None


@functools.lru_cache(maxsize=256)
def accepted_types(values: tuple[bytes, ...]) -> tuple[str, ...] | None:
    """The media types of the ``Accept`` headers ``values`` (docker sends several); None when
    there are none or a wildcard accepts anything. Types with ``q=0`` are left out. Cached: a
    client sends the same headers with every pull."""
    found: list[str] = []
    for value in values:
        for part in value.decode("latin-1").split(","):
            media_type, *params = part.split(";")
            media_type = media_type.strip().lower()
            if not media_type:
                continue
            if "*" in media_type:
                return None
            refused = False
            for param in params:
                key, _, number = param.partition("=")
                if key.strip().lower() == "q":
                    try:
                        refused = float(number) <= 0
                    except ValueError:
                        refused = False
            if not refused:
                found.append(media_type)
    return tuple(found) or None


def manifest_url(name: str, reference: str) -> str:
    return f"/v2/{name}/manifests/{reference}"


async def get(ctx: Context, name: str, reference: str) -> Response:
    """GET and HEAD: one read on the event loop (the hot path of every pull); only a pull
    whose ``Accept`` misses the stored type goes to a worker thread for the negotiation."""
    tag, digest = parse_reference(reference)
    registry_id = ctx.authorize(name, "BatchGetImage")
    accepted = accepted_types(ctx.accept)
    images = ctx.registry.images
    pull = ctx.request.method == "GET"  # a HEAD checks; a GET pulls (its time is recorded)
    reference_id = ImageId(digest, tag)
    if images.may_fetch(registry_id, name):  # a pull-through cache may ask its upstream
        record = await anyio.to_thread.run_sync(
            lambda: images.lookup(
                registry_id,
                name,
                reference_id,
                pull=pull,
                principal=ctx.principal,
                permit=functools.partial(ctx.permit, name),
            )
        )
    else:
        record = images.lookup(registry_id, name, reference_id, pull=pull, principal=ctx.principal)
    if images.needs_negotiation(record, accepted):
        # negotiation (by tag a conversion, by digest at most signing schema 1) may read blobs
        # and store one: off the event loop
        image = await anyio.to_thread.run_sync(images.serve, record, accepted, name, tag)
    else:
        image = images.serve(record, accepted, name, tag)
    digest_header = image.digest.encode("latin-1")
    headers = [
        (b"docker-content-digest", digest_header),
        (b"etag", b'"' + digest_header + b'"'),
        (b"content-length", str(len(image.manifest)).encode("latin-1")),
        (b"content-type", image.media_type.encode("latin-1")),
    ]
    return render.Prebuilt(image.manifest, 200, headers)


async def put(ctx: Context, name: str, reference: str) -> Response:
    tag, digest = parse_reference(reference)
    registry_id = ctx.authorize(name, "PutImage")
    raw = await _read_manifest(ctx)
    declared = ctx.request.headers.get("content-type", "").partition(";")[0].strip().lower()
    media_type = declared if declared in mt.MANIFEST_TYPES else None
    images = ctx.registry.images
    algorithm = digest.algorithm if digest is not None else "sha256"
    result = await ctx.push(
        registry_id,
        name,
        lambda: images.store_manifest(
            registry_id, name, raw, media_type, tag, digest, idempotent=True, algorithm=algorithm
        ),
    )
    stored = result.image.digest
    headers = {"Location": manifest_url(name, stored), "Docker-Content-Digest": stored}
    if result.image.subject:
        headers["OCI-Subject"] = result.image.subject
    return render.empty(201, headers)


async def _read_manifest(ctx: Context) -> bytes:
    declared = ctx.content_length()
    if declared is not None and declared > MAX_MANIFEST:
        raise _too_large()
    parts: list[bytes] = []
    size = 0
    async for chunk in ctx.request.stream():
        size += len(chunk)
        if size > MAX_MANIFEST:
            raise _too_large()
        parts.append(chunk)
    return b"".join(parts)


def _too_large() -> ManifestTooLarge:
    return ManifestTooLarge(
        f"The manifest is larger than the limit of {MAX_MANIFEST} bytes (4 MiB)"
    )


async def delete(ctx: Context, name: str, reference: str) -> Response:
    """By digest: the image with all its tags. By tag: only the tag."""
    tag, digest = parse_reference(reference)
    registry_id = ctx.authorize(name, "BatchDeleteImage")
    images = ctx.registry.images
    if digest is not None:
        await anyio.to_thread.run_sync(images.delete_manifest, registry_id, name, str(digest))
    else:
        assert tag is not None
        await anyio.to_thread.run_sync(images.untag, registry_id, name, tag)
    return render.empty(202)
