"""``/v2/<name>/referrers/<digest>``: the manifests whose ``subject`` is ``<digest>``.

Always an image index (empty when nothing refers to the digest, even an unknown one); an
``artifactType`` filter is applied when asked and then announced in ``OCI-Filters-Applied``.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from openecr.api.oci import render
from openecr.api.oci.common import Context, parse_digest
from openecr.domain import mediatypes as mt


async def list_referrers(ctx: Context, name: str, value: str) -> Response:
    digest = parse_digest(value)
    registry_id = ctx.authorize(name, "DescribeImages")
    wanted = [t for t in ctx.request.query_params.getlist("artifactType") if t]
    found = ctx.registry.images.referrers(registry_id, name, str(digest), wanted or None)
    manifests: list[dict[str, Any]] = []
    for referrer in found:
        descriptor: dict[str, Any] = {
            "mediaType": referrer.media_type,
            "digest": referrer.digest,
            "size": referrer.size,
        }
        if referrer.artifact_type:
            descriptor["artifactType"] = referrer.artifact_type
        if referrer.annotations:
            descriptor["annotations"] = dict(referrer.annotations)
        manifests.append(descriptor)
    headers = {"OCI-Filters-Applied": "artifactType"} if wanted else {}
    index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": manifests}
    return render.json_response(index, headers=headers, media_type=mt.OCI_INDEX)
