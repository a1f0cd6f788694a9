"""Replication peers: registries (account, region) served by another openecr, reached over its
ECR JSON API (repositories, creation templates, tokens; signed with botocore) and its /v2 API
(blobs and manifests: chunked, resumable uploads)."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import botocore.session
import urllib3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from openecr.domain.creation_templates import ROOT, prefix_matches
from openecr.ports.replication import PeerRefused, PeerRegistry, PeerUnavailable, Progress

log = logging.getLogger("openecr.replication")

CHUNK = 8 * 1024 * 1024  # bytes a PATCH of an upload carries
TOKEN_SECONDS = 6 * 3600  # a token is used for half of its 12 hours
_TRANSIENT = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class PeerAddress:
    registry_id: str
    region: str
    endpoint: str
    access_key_id: str | None = None
    secret_access_key: str | None = None


def _rechunk(pieces: Iterator[bytes], size: int) -> Iterator[bytes]:
    buffer = bytearray()
    for piece in pieces:
        buffer += piece
        while len(buffer) >= size:
            yield bytes(buffer[:size])
            del buffer[:size]
    if buffer:
        yield bytes(buffer)


class HttpPeer(PeerRegistry):
    def __init__(self, address: PeerAddress, chunk: int = CHUNK) -> None:
        self.address = address
        self.chunk = chunk
        self.host = f"{address.registry_id}.dkr.ecr.{address.region}.openecr-peer"
        self.http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=5, read=120))
        session = botocore.session.Session()
        self.ecr: Any = session.create_client(
            "ecr",
            region_name=address.region,
            endpoint_url=address.endpoint,
            aws_access_key_id=address.access_key_id or "openecr-replication",
            aws_secret_access_key=address.secret_access_key or "openecr-replication",
            config=BotoConfig(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=60),
        )
        self._token: tuple[str, float] | None = None
        self._lock = threading.Lock()
        self._repositories: set[str] = set()  # known to exist at the peer
        self._holders: dict[str, str] = {}  # blob digest -> a repository holding it at the peer

    # --- the ECR API --------------------------------------------------------------------------

    def _ecr(self, operation: str, **params: Any) -> Any:
        try:
            return getattr(self.ecr, operation)(**params)
        except ClientError as error:
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if status in _TRANSIENT or status == 0:
                raise PeerUnavailable(f"{operation}: {error}") from error
            raise
        except ParamValidationError as error:  # not the peer's fault: retrying cannot help
            raise PeerRefused(f"{operation}: {error}") from error
        except BotoCoreError as error:  # connection refused, timeouts, broken responses
            raise PeerUnavailable(f"{operation}: {error}") from error

    @staticmethod
    def _code(error: ClientError) -> str:
        return str(error.response.get("Error", {}).get("Code", ""))

    def _authorization(self, fresh: bool = False) -> dict[str, str]:
        if self.address.access_key_id is None:
            return {}
        with self._lock:
            if fresh or self._token is None or self._token[1] < time.monotonic():
                try:
                    data = self._ecr("get_authorization_token")["authorizationData"][0]
                except ClientError as error:
                    raise PeerRefused(f"GetAuthorizationToken: {error}") from error
                self._token = (data["authorizationToken"], time.monotonic() + TOKEN_SECONDS)
            return {"Authorization": f"Basic {self._token[0]}"}

    def _template(self, name: str) -> dict[str, Any] | None:
        """The peer's REPLICATION creation template for ``name``: the longest prefix covering
        it, ROOT only when no other does."""
        best: dict[str, Any] | None = None
        rank = -1
        params: dict[str, Any] = {}  # the caller's registry: the key's account, in the region
        while True:
            page = self._ecr("describe_repository_creation_templates", **params)
            for template in page.get("repositoryCreationTemplates", []):
                prefix = template["prefix"]
                if "REPLICATION" not in template.get("appliedFor", []):
                    continue
                if not prefix_matches(prefix, name):
                    continue
                mine = 0 if prefix == ROOT else len(prefix) + 1
                if mine > rank:
                    best, rank = template, mine
            if not page.get("nextToken"):
                return best
            params["nextToken"] = page["nextToken"]

    def ensure_repository(self, name: str) -> None:
        if name in self._repositories:
            return
        self._create_repository(name)
        self._repositories.add(name)

    def _create_repository(self, name: str) -> None:
        account = self.address.registry_id
        try:
            self._ecr("describe_repositories", registryId=account, repositoryNames=[name])
            return
        except ClientError as error:
            if self._code(error) != "RepositoryNotFoundException":
                raise PeerRefused(f"DescribeRepositories: {error}") from error
        try:
            template = self._template(name)
        except ClientError as error:
            raise PeerRefused(f"DescribeRepositoryCreationTemplates: {error}") from error
        create: dict[str, Any] = {"registryId": account, "repositoryName": name}
        if template is not None:
            create["imageTagMutability"] = template.get("imageTagMutability", "MUTABLE")
            if template.get("imageTagMutabilityExclusionFilters"):
                filters = template["imageTagMutabilityExclusionFilters"]
                create["imageTagMutabilityExclusionFilters"] = filters
            if template.get("encryptionConfiguration"):
                create["encryptionConfiguration"] = template["encryptionConfiguration"]
            if template.get("resourceTags"):
                create["tags"] = template["resourceTags"]
        try:
            self._ecr("create_repository", **create)
        except ClientError as error:
            if self._code(error) == "RepositoryAlreadyExistsException":
                return  # a concurrent replication created it
            raise PeerRefused(f"CreateRepository: {error}") from error
        if template is not None and template.get("lifecyclePolicy"):
            try:
                self._ecr(
                    "put_lifecycle_policy",
                    registryId=account,
                    repositoryName=name,
                    lifecyclePolicyText=template["lifecyclePolicy"],
                )
            except ClientError as error:
                log.warning("peer %s: lifecycle policy of %s not set: %s", self.host, name, error)
        if template is not None and template.get("repositoryPolicy"):
            try:
                self._ecr(
                    "set_repository_policy",
                    registryId=account,
                    repositoryName=name,
                    policyText=template["repositoryPolicy"],
                )
            except ClientError as error:  # a peer without repository policies
                log.warning("peer %s: repository policy of %s not set: %s", self.host, name, error)

    # --- /v2 ------------------------------------------------------------------------------------

    def _url(self, path_or_url: str) -> str:
        parts = urlsplit(path_or_url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        return self.address.endpoint + path

    def _v2(
        self,
        method: str,
        path: str,
        expect: Sequence[int],
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> urllib3.BaseHTTPResponse:
        for fresh in (False, True):
            sent = {"Host": self.host, **self._authorization(fresh), **(headers or {})}
            try:
                response = self.http.request(
                    method, self._url(path), body=body, headers=sent, preload_content=True
                )
            except urllib3.exceptions.HTTPError as error:
                raise PeerUnavailable(f"{method} {path}: {error}") from error
            if response.status == 401 and not fresh and self.address.access_key_id:
                continue  # the token expired: get a new one once
            if response.status in expect:
                return response
            text = response.data[:500].decode(errors="replace")
            message = f"{method} {path}: HTTP {response.status} {text}"
            if response.status in _TRANSIENT:
                raise PeerUnavailable(message)
            if response.status == 404 and "NAME_UNKNOWN" in text:
                self._repositories.clear()  # deleted at the peer: the retry creates it again
                raise PeerUnavailable(message)
            raise PeerRefused(message)
        raise AssertionError("unreachable")

    def has_blob(self, name: str, digest: str) -> bool:
        """Whether repository ``name`` holds the blob; one held by another repository of the
        registry (that this process saw there) is mounted into it, so it is not sent again."""
        response = self._v2("HEAD", f"/v2/{name}/blobs/{digest}", (200, 404))
        if response.status == 200:
            self._holders[digest] = name
            return True
        holder = self._holders.get(digest)
        if holder is None or holder == name:
            return False
        mounted = self._v2(
            "POST",
            f"/v2/{name}/blobs/uploads/?mount={quote(digest)}&from={quote(holder)}",
            (201, 202),
        )
        if mounted.status == 202:  # not mounted: drop the session the peer opened instead
            with contextlib.suppress(PeerRefused):
                self._v2("DELETE", mounted.headers["Location"], (204,))
            return False
        log.info("mounted %s into %s at %s from %s", digest, name, self.host, holder)
        return True

    def _resume(self, location: str) -> tuple[str, int] | None:
        """Where an earlier upload stands at the peer (location, offset), or None when the
        peer no longer has it."""
        try:
            response = self._v2("GET", location, (204,))
        except PeerRefused:
            return None
        held = response.headers.get("Range", "")
        end = held.rpartition("-")[2]
        offset = int(end) + 1 if end.isdigit() else 0
        return response.headers.get("Location") or location, offset

    def upload_blob(
        self,
        name: str,
        digest: str,
        size: int,
        read: Callable[[int], Iterator[bytes]],
        resume: str | None,
        progress: Progress,
    ) -> None:
        state = self._resume(resume) if resume else None
        if state is None:
            started = self._v2("POST", f"/v2/{name}/blobs/uploads/", (202,))
            state = (started.headers["Location"], 0)
            progress(digest, state[0], 0)
        else:
            log.info("resuming the upload of %s to %s at byte %d", digest, self.host, state[1])
        location, offset = state
        if offset < size:
            for piece in _rechunk(read(offset), self.chunk):
                end = offset + len(piece) - 1
                response = self._v2(
                    "PATCH",
                    location,
                    (202,),
                    body=piece,
                    headers={
                        "Content-Type": "application/octet-stream",
                        "Content-Range": f"{offset}-{end}",
                    },
                )
                location = response.headers.get("Location") or location
                offset = end + 1
                progress(digest, location, offset)
        separator = "&" if "?" in location else "?"
        self._v2("PUT", f"{location}{separator}digest={quote(digest)}", (201,), body=b"")
        self._holders[digest] = name

    def put_manifest(self, name: str, reference: str, raw: bytes, media_type: str) -> None:
        self._v2(
            "PUT",
            f"/v2/{name}/manifests/{reference}",
            (201,),
            body=raw,
            headers={"Content-Type": media_type},
        )


class PeerDirectory:
    """The ``PeerConnector`` of a configured list of peers (one client each, made on first
    use)."""

    def __init__(self, peers: Sequence[PeerAddress], chunk: int = CHUNK) -> None:
        self.addresses = {(p.registry_id, p.region): p for p in peers}
        self.chunk = chunk
        self._peers: dict[tuple[str, str], HttpPeer] = {}
        self._lock = threading.Lock()

    def __call__(self, account: str, region: str) -> PeerRegistry | None:
        address = self.addresses.get((account, region))
        if address is None:
            return None
        with self._lock:
            peer = self._peers.get((account, region))
            if peer is None:
                peer = self._peers[(account, region)] = HttpPeer(address, self.chunk)
            return peer
