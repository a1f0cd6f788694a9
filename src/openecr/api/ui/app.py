"""The web page: server-rendered HTML (Jinja2, autoescaped), no JavaScript, every asset served
here (one stylesheet). Read-only; every page is a GET.

Pages::

    /ui/                                   registries (account, region) holding repositories
    /ui/<registry>/                        its repositories (by name, paginated)
    /ui/<registry>/<name>                  a repository's images (newest first, or by tag
                                           prefix with ?tag=..., paginated with ?after=...)
    /ui/<registry>/<name>@<digest>         one image: tags, manifest, config, layers, platforms,
                                           referrers and the docker pull command
    /ui/static/openecr.css                 the stylesheet

``<registry>`` is the store's key: the account, or ``<account>.<region>`` outside the default
region. With ``--credentials`` every page but the stylesheet needs HTTP Basic authentication:
an access key id and its secret access key, or the user ``AWS`` and a registry password from
GetAuthorizationToken. A signed-in caller is listed its own account's registries and their
repositories; a repository's pages (its images, one image) follow the policies the APIs enforce
for its principal: ``ecr:DescribeImages`` and ``ecr:BatchGetImage`` on that repository, so an
explicit Deny hides a repository of its own account and a repository policy can open one of
another account.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from importlib.resources import files
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import Receive, Scope, Send

from openecr.domain import names
from openecr.domain.iam_policy import root_arn
from openecr.domain.registries import account_of, region_of
from openecr.errors import AccessDenied, ImageNotFound, RepositoryNotFound
from openecr.service.browse import BrowseService
from openecr.service.registry import Registry

if TYPE_CHECKING:
    from jinja2 import Environment

PREFIX = "/ui"
PAGE_SIZE = 50
REGISTRY_KEY = re.compile(r"[0-9]{12}(\.[a-z0-9-]{1,40})?")
SECURITY_HEADERS = {
    # nothing runs, nothing loads from elsewhere, no framing: escaping has a second wall
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True, slots=True)
class Viewer:
    """A signed-in caller: its account and principal (an IAM ARN)."""

    account: str
    principal: str


@dataclass(frozen=True, slots=True)
class UiAuth:
    """Who may look: ``keys`` maps access key ids to (secret, account) or (secret, account,
    principal ARN); the user ``AWS`` signs in with a registry password (checked by the
    registry's token service)."""

    keys: Mapping[str, tuple[str, ...]]

    def account(self, registry: Registry, authorization: str | None) -> str | None:
        """The account of a ``Basic`` header's credentials, or None."""
        viewer = self.viewer(registry, authorization)
        return None if viewer is None else viewer.account

    def viewer(self, registry: Registry, authorization: str | None) -> Viewer | None:
        """Who a ``Basic`` header's credentials are, or None."""
        scheme, _, value = (authorization or "").strip().partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        user, sep, password = decoded.partition(":")
        if not sep:
            return None
        if user == "AWS":
            try:
                claims = registry.tokens.claims(password)
            except AccessDenied:
                return None
            return Viewer(claims.account, claims.principal)
        found = self.keys.get(user)
        if found is None or not _same(found[0], password):
            return None
        account = found[1]
        return Viewer(account, found[2] if len(found) > 2 else root_arn(account))


def _same(a: str, b: str) -> bool:
    import hmac

    return hmac.compare_digest(a.encode(), b.encode())


def human_size(value: int) -> str:
    """1536 -> '1.5 KiB'."""
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError  # pragma: no cover


def when(value: datetime | None) -> str:
    return "never" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


KINDS = {
    "application/vnd.docker.distribution.manifest.v2+json": "Docker image",
    "application/vnd.docker.distribution.manifest.list.v2+json": "Docker manifest list",
    "application/vnd.docker.distribution.manifest.v1+json": "Docker schema 1",
    "application/vnd.docker.distribution.manifest.v1+prettyjws": "Docker schema 1 (signed)",
    "application/vnd.oci.image.manifest.v1+json": "OCI image",
    "application/vnd.oci.image.index.v1+json": "OCI index",
}


def kind(media_type: str) -> str:
    """A manifest media type as people name it (others as they are)."""
    return KINDS.get(media_type, media_type)


def short(digest: str) -> str:
    algorithm, _, hexa = digest.partition(":")
    return f"{algorithm}:{hexa[:12]}" if hexa else digest


def _environment() -> Environment:
    """The templates' environment; jinja2 (11 MB of modules) is imported with it, on the
    first page served."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(
        loader=PackageLoader("openecr.api.ui", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(size=human_size, when=when, short=short, kind=kind)
    env.globals.update(prefix=PREFIX, account_of=account_of)
    return env


class UiApp:
    """The pages as a bare ASGI app (mounted at :data:`PREFIX` by ``create_app``)."""

    def __init__(
        self, registry: Registry, browse: BrowseService, auth: UiAuth | None = None
    ) -> None:
        self.registry = registry
        self.browse = browse
        self.auth = auth
        self._env: Environment | None = None
        self.css = (files("openecr.api.ui") / "static" / "openecr.css").read_bytes()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        response = await self.respond(request)
        await response(scope, receive, send)

    async def respond(self, request: Request) -> Response:
        path = request.url.path
        if request.method not in ("GET", "HEAD"):
            return self.page("error.html", 405, {"title": "Method not allowed"}, {"Allow": "GET"})
        if path == PREFIX:
            return RedirectResponse(f"{PREFIX}/", 308)
        if path == f"{PREFIX}/static/openecr.css":
            headers = {**SECURITY_HEADERS, "Cache-Control": "max-age=3600"}
            return Response(self.css, 200, headers, media_type="text/css")
        accounts: set[str] | None = None
        viewer: Viewer | None = None
        if self.auth is not None:
            viewer = self.auth.viewer(self.registry, request.headers.get("authorization"))
            if viewer is None:
                return self.page(
                    "error.html",
                    401,
                    {
                        "title": "Sign in",
                        "message": "Sign in with an access key id and its secret access key, "
                        "or with the user AWS and a password from get-login-password.",
                    },
                    {"WWW-Authenticate": 'Basic realm="openecr", charset="UTF-8"'},
                )
            accounts = {viewer.account}
        rest = path.removeprefix(f"{PREFIX}/")
        key, slash, name = rest.partition("/")
        try:
            if not rest:
                return await self.registries(request, accounts)
            if not REGISTRY_KEY.fullmatch(key):
                return self.not_found("No such registry", rest)
            if not name:
                if accounts is not None and account_of(key) not in accounts:
                    return self.not_found("No such registry", rest)
                if not slash:
                    return RedirectResponse(f"{PREFIX}/{key}/", 308)
                return await self.repositories(request, key)
            name, at, digest = name.partition("@")
            if not names.is_repository_name(name):
                return self.not_found("No such repository", name)
            action = "ecr:BatchGetImage" if at else "ecr:DescribeImages"
            if viewer is not None and not await anyio.to_thread.run_sync(
                self._allowed, viewer, key, name, action, request.url.scheme == "https"
            ):
                return self.not_found("No such repository", name)
            if at:
                return await self.image(request, key, name, digest)
            return await self.images(request, key, name)
        except RepositoryNotFound:
            return self.not_found("No such repository", name)
        except ImageNotFound:
            return self.not_found("No such image", f"{name}@{digest}")

    def page(
        self,
        template: str,
        status: int = 200,
        context: dict[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> HTMLResponse:
        if self._env is None:
            self._env = _environment()
        body = self._env.get_template(template).render(**(context or {}))
        return HTMLResponse(body, status, {**SECURITY_HEADERS, **(headers or {})})

    def not_found(self, title: str, what: str) -> HTMLResponse:
        return self.page("error.html", 404, {"title": title, "message": what})

    def _region(self, key: str) -> str:
        return region_of(key, self.registry.settings.region)

    def _allowed(self, viewer: Viewer, key: str, name: str, action: str, secure: bool) -> bool:
        """Whether the policies let ``viewer`` perform ``action`` on repository ``name`` of
        registry ``key`` (as on the APIs: its own account unless explicitly denied, another
        account's only where a policy allows it)."""
        region = self._region(key)
        resource = f"arn:aws:ecr:{region}:{account_of(key)}:repository/{name}"
        verdict = self.registry.policies.decide(
            key, viewer.principal, action, resource, name, region=region, secure=secure
        )
        return verdict.allowed

    async def registries(self, request: Request, accounts: set[str] | None) -> Response:
        keys = await anyio.to_thread.run_sync(self.browse.registries, accounts)
        rows = [(k, account_of(k), self._region(k)) for k in keys]
        settings = self.registry.settings
        return self.page(
            "registries.html",
            context={
                "title": "Registries",
                "registries": rows,
                "default_account": settings.default_account,
                "default_region": settings.region,
                "signed_in": sorted(accounts) if accounts is not None else None,
            },
        )

    async def repositories(self, request: Request, key: str) -> Response:
        after = request.query_params.get("after") or None
        summaries, next_after = await anyio.to_thread.run_sync(
            self.browse.repositories, key, after, PAGE_SIZE
        )
        return self.page(
            "repositories.html",
            context={
                "title": f"Repositories of {account_of(key)} in {self._region(key)}",
                "key": key,
                "account": account_of(key),
                "region": self._region(key),
                "repositories": summaries,
                "next": f"?{urlencode({'after': next_after})}" if next_after else None,
                "first": f"{PREFIX}/{key}/" if after else None,
            },
        )

    def _host(self, request: Request, key: str) -> str:
        return self.registry.registry_host(
            account_of(key), request.headers.get("host", "localhost"), self._region(key)
        )

    async def images(self, request: Request, key: str, name: str) -> Response:
        after = request.query_params.get("after") or None
        prefix = request.query_params.get("tag", "").strip()
        page = await anyio.to_thread.run_sync(
            self.browse.images, key, name, after, PAGE_SIZE, prefix
        )
        query = {"tag": prefix} if prefix else {}
        base = f"{PREFIX}/{key}/{name}"
        return self.page(
            "images.html",
            context={
                "title": name,
                "key": key,
                "account": account_of(key),
                "region": self._region(key),
                "name": name,
                "page": page,
                "tag": prefix,
                "host": self._host(request, key),
                "next": f"?{urlencode({**query, 'after': page.next})}" if page.next else None,
                "first": f"{base}?{urlencode(query)}" if after else None,
            },
        )

    async def image(self, request: Request, key: str, name: str, digest: str) -> Response:
        detail = await anyio.to_thread.run_sync(self.browse.image, key, name, digest)
        return self.page(
            "image.html",
            context={
                "title": f"{name}@{short(digest)}",
                "key": key,
                "account": account_of(key),
                "region": self._region(key),
                "name": name,
                "d": detail,
                "image": detail.view.image,
                "tags": detail.view.tags,
                "host": self._host(request, key),
            },
        )


def wants_html(headers: Mapping[str, str] | list[tuple[bytes, bytes]]) -> bool:
    """Whether a request's ``Accept`` header asks for HTML first (a browser's does)."""
    if isinstance(headers, list):
        accept = next((v.decode("latin-1") for k, v in headers if k == b"accept"), "")
    else:
        accept = headers.get("accept", "")
    return "text/html" in accept
