"""What every ``/v2`` handler shares: the request context, argument parsing, body streaming."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TypeVar

import anyio
import anyio.to_thread
from starlette.requests import Request

from openecr.api.oci.auth import Authenticator, Identity
from openecr.domain import names
from openecr.domain.creation_templates import AppliedFor
from openecr.domain.digest import Digest
from openecr.domain.iam_policy import root_arn
from openecr.domain.registries import account_of
from openecr.errors import (
    AccessDenied,
    DigestInvalid,
    InvalidParameter,
    PaginationInvalid,
    PushToPullThroughCache,
    RepositoryAlreadyExists,
    RepositoryNotFound,
)
from openecr.service.blobs import PartUpload
from openecr.service.registry import Registry

T = TypeVar("T")

# The body reaches the blob store in batches of about this size: one thread hop per batch,
# and never much more than this of a blob in memory.
BATCH = 1024 * 1024
MAX_PAGE = 1000  # the most tags or repositories one page holds


@dataclass(slots=True)
class Context:
    """One request to ``/v2``: the registry, who calls, and which account it addresses."""

    registry: Registry
    auth: Authenticator
    request: Request
    identity: Identity
    accept: tuple[bytes, ...] = ()  # the request's Accept headers, as sent

    @property
    def registry_key(self) -> str:
        """The store's key of the registry (account and region) the request addresses."""
        return self.registry.settings.registry_key(self.identity.account, self.identity.region)

    @property
    def principal(self) -> str:
        """Who calls: the token's principal, else (no authentication) the default account's
        root."""
        return self.identity.principal or root_arn(self.registry.settings.default_account)

    def permit(self, name: str, action: str) -> None:
        """Raises AccessDenied unless the caller may perform ECR's ``action`` on repository
        ``name`` (``*``: the registry) in the addressed registry: when authenticating, a token
        acts in its own region only, and the registry's policies decide for its principal
        (another account's only where a policy allows it; anyone's explicit Deny refuses)."""
        identity = self.identity
        if identity.caller is None or identity.principal is None:
            return
        if identity.caller_region != identity.region:
            raise self.auth.denied(identity, name, action)
        verdict = self.registry.policies.decide(
            self.registry_key,
            identity.principal,
            f"ecr:{action}",
            self.auth.resource_arn(identity, name),
            name,
            region=identity.region,
            secure=self.request.url.scheme == "https",
        )
        if not verdict.allowed:
            raise self.auth.denied(identity, name, action, explicit=verdict.explicit_deny)

    def allowed(self, name: str, action: str) -> bool:
        """Whether :meth:`permit` lets the caller perform ``action`` on ``name``."""
        try:
            self.permit(name, action)
        except AccessDenied:
            return False
        return True

    def authorize(self, name: str, action: str) -> str:
        """The registry key ``name`` lives in, once the name is valid and the caller may act
        there (ECR's IAM action ``action`` names the operation in the denial)."""
        check_name(name)
        self.permit(name, action)
        return self.registry_key

    async def push(self, registry_id: str, name: str, call: Callable[[], T]) -> T:
        """Run a write in a worker thread. With create-on-push, a missing repository is
        created and the write retried (the writes passed here raise RepositoryNotFound before
        any streamed body is read, so the retry still has the whole body)."""
        try:
            return await anyio.to_thread.run_sync(call)
        except RepositoryNotFound:
            if not self.registry.settings.create_on_push:
                raise
            if self.registry.images.may_fetch(registry_id, name):
                # a pull-through cache rule covers the name: only the cache creates it
                raise PushToPullThroughCache(name, account_of(registry_id)) from None
        await anyio.to_thread.run_sync(self._create, registry_id, name)
        return await anyio.to_thread.run_sync(call)

    def _create(self, registry_id: str, name: str) -> None:
        with contextlib.suppress(RepositoryAlreadyExists):  # a concurrent push created it
            spec = self.registry.templates.apply(registry_id, name, AppliedFor.CREATE_ON_PUSH)
            self.registry.repositories.create(registry_id, spec)

    def query_int(self, key: str) -> int | None:
        """A non-negative integer query parameter (``n``); raises PaginationInvalid."""
        value = self.request.query_params.get(key)
        if value is None:
            return None
        if not value.isdigit() or len(value) > 9:
            raise PaginationInvalid(
                f"The value of '{key}' must be a non-negative integer, not '{echo(value)}'"
            )
        return int(value)

    def content_length(self) -> int | None:
        value = self.request.headers.get("content-length")
        return int(value) if value is not None and value.isdigit() else None


ECHO_LIMIT = 100  # characters of a client's value an error message repeats


def echo(value: str) -> str:
    """``value`` for an error message: whole when short, else its first :data:`ECHO_LIMIT`
    characters and how long it was (a message never repeats a client's input unbounded)."""
    if len(value) <= ECHO_LIMIT:
        return value
    return f"{value[:ECHO_LIMIT]}... ({len(value)} characters)"


def check_name(name: str) -> None:
    """Raises InvalidParameter (NAME_INVALID) unless ``name`` is a valid repository name."""
    if not names.is_repository_name(name):
        raise InvalidParameter.constraint(
            "repositoryName",
            f"must satisfy regular expression '{names.REPOSITORY_NAME_MESSAGE_PATTERN}' and be "
            f"{names.REPOSITORY_NAME_MIN} to {names.REPOSITORY_NAME_MAX} characters long",
        )


def parse_digest(value: str) -> Digest:
    """A digest openecr can verify (sha256 or sha512); raises DigestInvalid."""
    digest = Digest.try_parse(value)
    if digest is None:
        raise DigestInvalid(
            f"The digest '{echo(value)}' is not valid: expected sha256:<64 hex> or sha512:<128 hex>"
        )
    return digest


async def body_batches(request: Request) -> AsyncIterator[list[bytes]]:
    """The request body in batches of about :data:`BATCH` bytes, as it arrives."""
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        if chunk:
            parts.append(chunk)
            size += len(chunk)
        if size >= BATCH:
            yield parts
            parts, size = [], 0
    if parts:
        yield parts


async def stream_part(request: Request, part: PartUpload, length: int | None) -> int:
    """Stream the request body onto an upload as one part and return the upload's size.

    Only the disk writes (and the hashing, which releases the GIL) run in worker threads, a
    batch at a time, so a slow client holds no thread while its bytes trickle in. The next
    batch is received while the previous one is hashed and written (at most two batches in
    memory). Any failure (a client gone mid-body included) drops the part whole."""
    writing: asyncio.Future[None] | None = None
    try:
        async for batch in body_batches(request):
            if writing is not None:
                await asyncio.shield(writing)  # a cancelled request lets it finish (below)
            writing = asyncio.ensure_future(anyio.to_thread.run_sync(part.write, batch))
        if writing is not None:
            pending, writing = writing, None
            await asyncio.shield(pending)
        return await anyio.to_thread.run_sync(part.finish, length)
    except BaseException:
        with anyio.CancelScope(shield=True):
            if writing is not None:  # let the batch in flight land before dropping the part
                await asyncio.wait({writing})
                if not writing.cancelled():
                    writing.exception()  # retrieved: the error that matters is raised below
            await anyio.to_thread.run_sync(part.abort)
        raise
