"""The ``/v2`` ASGI application: routing, identity, and the one place errors are rendered.

Routes (``<name>`` may contain ``/``; the last matching suffix wins, so a name never swallows
the endpoint)::

    GET                      /v2/
    GET                      /v2/_catalog
    GET HEAD PUT DELETE      /v2/<name>/manifests/<tag or digest>
    GET HEAD DELETE          /v2/<name>/blobs/<digest>
    POST                     /v2/<name>/blobs/uploads/
    GET PATCH PUT DELETE     /v2/<name>/blobs/uploads/<id>
    GET                      /v2/<name>/tags/list
    GET                      /v2/<name>/referrers/<digest>

Reads that are plain point lookups (manifests, blob stats, tags, referrers) run on the event
loop; writes and anything that may wait on a lock or a body run in worker threads.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from openecr.api.oci import blobs, manifests, referrers, render, tags, uploads
from openecr.api.oci.auth import Authenticator
from openecr.api.oci.common import Context
from openecr.api.storage_errors import storage_error
from openecr.errors import (
    NameInvalid,
    OciCode,
    OpenEcrError,
    RouteNotFound,
    UnableToGetUpstreamLayer,
    UnknownOperation,
)
from openecr.service.registry import Registry

log = logging.getLogger("openecr.oci")

Handler = Callable[[Context, str, str], Awaitable[Response]]

MANIFEST_METHODS: dict[str, Handler] = {
    "GET": manifests.get,
    "HEAD": manifests.get,
    "PUT": manifests.put,
    "DELETE": manifests.delete,
}
BLOB_METHODS: dict[str, Handler] = {"GET": blobs.get, "HEAD": blobs.get, "DELETE": blobs.delete}
UPLOADS_METHODS: dict[str, Handler] = {"POST": uploads.start}
UPLOAD_METHODS: dict[str, Handler] = {
    "GET": uploads.status,
    "PATCH": uploads.patch,
    "PUT": uploads.put,
    "DELETE": uploads.cancel,
}
TAGS_METHODS: dict[str, Handler] = {"GET": tags.list_tags}
REFERRERS_METHODS: dict[str, Handler] = {"GET": referrers.list_referrers}


# (handler table, method) -> the operation's name in metrics and the access log
OPERATION_NAMES: dict[tuple[int, str], str] = {
    (id(table), method): f"{verb}{noun}"
    for table, noun, verbs in (
        (
            MANIFEST_METHODS,
            "Manifest",
            {"GET": "Get", "HEAD": "Head", "PUT": "Put", "DELETE": "Delete"},
        ),
        (BLOB_METHODS, "Blob", {"GET": "Get", "HEAD": "Head", "DELETE": "Delete"}),
        (UPLOADS_METHODS, "Upload", {"POST": "Start"}),
        (
            UPLOAD_METHODS,
            "Upload",
            {"GET": "Get", "PATCH": "Patch", "PUT": "Complete", "DELETE": "Cancel"},
        ),
        (TAGS_METHODS, "Tags", {"GET": "List"}),
        (REFERRERS_METHODS, "Referrers", {"GET": "List"}),
    )
    for method, verb in verbs.items()
}


def operation_name(method: str, path: str) -> str:
    """A name for the request ``method path`` (a path starting with ``/v2``) from a bounded
    set: ``GetManifest``, ``PatchUpload``, ``Catalog``, ``Base``, ... (``Unknown`` when no
    endpoint serves it)."""
    rest = path[len("/v2") :]
    if rest in ("", "/"):
        return "Base"
    if rest == "/_catalog":
        return "Catalog"
    found = route(rest)
    if found is None:
        return "Unknown"
    return OPERATION_NAMES.get((id(found[0]), method), "Unknown")


def route(path: str) -> tuple[dict[str, Handler], str, str] | None:
    """The handlers, repository name and reference of a path below ``/v2``."""
    name, sep, ref = path.rpartition("/manifests/")
    if sep and ref and "/" not in ref:
        return MANIFEST_METHODS, name[1:], ref
    if path.endswith("/tags/list"):
        return TAGS_METHODS, path[1 : -len("/tags/list")], ""
    if path.endswith("/blobs/uploads") or path.endswith("/blobs/uploads/"):
        return UPLOADS_METHODS, path[1:].rstrip("/")[: -len("/blobs/uploads")], ""
    name, sep, ref = path.rpartition("/blobs/uploads/")
    if sep and ref and "/" not in ref:
        return UPLOAD_METHODS, name[1:], ref
    name, sep, ref = path.rpartition("/blobs/")
    if sep and ref and "/" not in ref:
        return BLOB_METHODS, name[1:], ref
    name, sep, ref = path.rpartition("/referrers/")
    if sep and ref and "/" not in ref:
        return REFERRERS_METHODS, name[1:], ref
    return None


class OciApp:
    """An ASGI app serving every path under ``/v2`` (mount it at ``/v2`` and ``/v2/...``)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.auth = Authenticator(registry)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            response = await self.dispatch(request)
        except OpenEcrError as error:
            response = self.error(request, error)
        except ClientDisconnect:
            return
        except Exception as error:
            storage = storage_error(error)
            if storage is None:
                log.exception("%s %s failed", request.method, request.url.path)
            response = render.error_response(storage or OpenEcrError("An internal error occurred"))
        response.raw_headers.append(render.API_VERSION)  # no handler sets it
        try:
            await response(scope, receive, send)
        except UnableToGetUpstreamLayer:
            # a first pull streaming from an upstream broke off (logged where it broke, nothing
            # cached): returning with the body short makes the server abort the connection
            return

    def error(self, request: Request, error: OpenEcrError) -> Response:
        headers = {}
        if error.oci_code is OciCode.UNAUTHORIZED:
            host = request.headers.get("host", "localhost")
            headers["WWW-Authenticate"] = self.auth.challenge(request.url.scheme, host)
        return render.error_response(error, headers=headers)

    async def dispatch(self, request: Request) -> Response:
        path = request.scope["path"]
        root = request.scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        path = path[len("/v2") :]
        raw = request.scope.get("raw_path") or b""
        if b"%2f" in raw.lower():
            # a name's slashes are path separators: "a%2Fb" would otherwise reach "a/b"
            raise NameInvalid("A repository name in a path cannot contain an encoded slash (%2F)")
        # one pass over the headers (names arrive lower case) for what every request needs
        host = ""
        authorization = None
        accept: list[bytes] = []
        for key, value in request.scope["headers"]:
            if key == b"host":
                host = value.decode("latin-1")
            elif key == b"authorization":
                authorization = value.decode("latin-1")
            elif key == b"accept":
                accept.append(value)
        identity = self.auth.identify(host, authorization)
        request.scope["openecr.account"] = identity.account  # for the access log
        if identity.caller is not None:
            request.scope["openecr.principal"] = f"token:{identity.caller}"
        ctx = Context(self.registry, self.auth, request, identity, tuple(accept))
        method = request.method
        if path in ("", "/"):
            if method not in ("GET", "HEAD"):
                raise self.unsupported(method, path, ("GET", "HEAD"))
            return render.json_response({})
        if path == "/_catalog":
            if method not in ("GET", "HEAD"):
                raise self.unsupported(method, path, ("GET", "HEAD"))
            return await tags.catalog(ctx)
        found = route(path)
        if found is None:
            raise RouteNotFound(f"No registry endpoint serves /v2{path}")
        handlers, name, ref = found
        request.scope["openecr.operation"] = OPERATION_NAMES.get((id(handlers), method), "Unknown")
        handler = handlers.get(method)
        if handler is None:
            raise self.unsupported(method, path, tuple(handlers))
        return await handler(ctx, name, ref)

    @staticmethod
    def unsupported(method: str, path: str, allowed: tuple[str, ...]) -> UnknownOperation:
        return UnknownOperation(
            f"The method {method} is not supported on /v2{path}; use {', '.join(allowed)}"
        )
