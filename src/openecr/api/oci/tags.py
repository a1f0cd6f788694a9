"""``/v2/<name>/tags/list`` and ``/v2/_catalog``: lexical lists paged by ``n`` and ``last``.

A page that stops short of the end carries ``Link: <...?n=<n>&last=<last>>; rel="next"``.
Tags come all at once unless ``n`` is given; the catalog pages by 100 by default. No page
holds more than 1000 entries (the ``Link`` header then says where to go on).
"""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.responses import Response

from openecr.api.oci import render
from openecr.api.oci.common import MAX_PAGE, Context

CATALOG_PAGE = 100


def next_link(path: str, n: int, last: str) -> str:
    return f'<{path}?{urlencode({"n": n, "last": last})}>; rel="next"'


async def list_tags(ctx: Context, name: str, _ref: str) -> Response:
    registry_id = ctx.authorize(name, "ListImages")
    n = ctx.query_int("n")
    last = ctx.request.query_params.get("last") or None
    limit = None if n is None else min(n, MAX_PAGE)
    tags, more = ctx.registry.images.list_tags(registry_id, name, last, limit)
    headers = {}
    if more and tags and n:
        headers["Link"] = next_link(f"/v2/{name}/tags/list", n, tags[-1])
    return render.json_response({"name": name, "tags": tags}, headers=headers)


async def catalog(ctx: Context) -> Response:
    ctx.permit("*", "DescribeRepositories")
    n = ctx.query_int("n")
    last = ctx.request.query_params.get("last") or None
    if n == 0:
        return render.json_response({"repositories": []})
    limit = min(n or CATALOG_PAGE, MAX_PAGE)
    found, more = ctx.registry.repositories.catalog(ctx.registry_key, last, limit)
    headers = {}
    if more and found:
        headers["Link"] = next_link("/v2/_catalog", limit, found[-1])
    return render.json_response({"repositories": found}, headers=headers)
