"""Pull-through cache rules (registry documents of kind ``pull-through-cache-rule``, keyed by
prefix) and the cache itself: what a pull of a repository under a rule's prefix does when the
image or layer is not stored (or a cached tag is due for a check).

The cache is a source that :class:`~openecr.service.images.ImageService` and
:class:`~openecr.service.blobs.BlobService` consult before they answer a pull (``covers`` says
cheaply whether it may have anything to do, ``ensure_image`` / ``ensure_blob`` do it):

* an image not stored: its manifest (a list or index with every child) is fetched from the
  upstream, every digest verified, and stored through ``ImageService.store_manifest`` (so push
  listeners hear it), in a repository created on first use with the PULL_THROUGH_CACHE
  creation template; layers follow when they are pulled (``ensure_blob``: streamed into the
  blob store, verified by the checking layer, linked);
* a cached tag is checked against the upstream (a HEAD) at most once per ``ttl`` seconds and
  moved when the upstream's tag moved;
* an upstream that cannot answer: the cached copy is served; with none, ECR's errors
  (UnableToGetUpstreamImage / UnableToGetUpstreamLayer, carrying BatchGetImage's failure
  code); an upstream that has no such image leaves the pull to answer ImageNotFound.

Concurrent pulls of one missing image or layer fetch it once (per process: striped locks).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from openecr.domain import mediatypes as mt
from openecr.domain.creation_templates import AppliedFor
from openecr.domain.digest import Digest
from openecr.domain.manifest import parse_manifest
from openecr.domain.model import BlobInfo, FailureCode, ImageId
from openecr.domain.pullthrough import (
    ROOT,
    UPSTREAM_KINDS,
    PullThroughRule,
    kind_of_host,
    match_rule,
    normalize_prefix,
    parse_upstream_url,
)
from openecr.domain.registries import account_of
from openecr.errors import (
    InvalidLayer,
    InvalidParameter,
    LimitExceeded,
    ManifestInvalid,
    PullThroughCacheRuleAlreadyExists,
    PullThroughCacheRuleNotFound,
    RepositoryAlreadyExists,
    SecretNotFound,
    UnableToGetUpstreamImage,
    UnableToGetUpstreamLayer,
    UnsupportedUpstreamRegistry,
)
from openecr.ports.metadata import MetadataStore
from openecr.ports.upstream import (
    UpstreamEndpoint,
    UpstreamFactory,
    UpstreamFailure,
    UpstreamProblem,
    UpstreamRegistry,
)
from openecr.service.blobstore import BlobStore
from openecr.service.common import Clock, utcnow
from openecr.service.creation_templates import CreationTemplateService
from openecr.service.images import ImageService
from openecr.service.paging import decode_token, encode_token
from openecr.service.repositories import RepositoryService

log = logging.getLogger(__name__)

KIND = "pull-through-cache-rule"
STATE = "pull-through-cache"  # repository document: {"checked": {tag: epoch seconds}}
MAX_RULES = 50  # ECR's quota of pull through cache rules per registry
PAGE = 100
DEFAULT_TTL = 24 * 3600.0
RULES_CACHE_SECONDS = 1.0  # how stale ``covers``'s view of the rules may be
_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::([0-9]{12}):role/[\w+=,.@/-]+")
# what the upstream is asked for: lists and indexes first, so a multi-arch tag is cached whole
ACCEPT = (mt.OCI_INDEX, mt.DOCKER_MANIFEST_LIST, mt.OCI_MANIFEST, mt.DOCKER_MANIFEST_V2)
_STRIPES = 64

_FAILURE_CODES = {
    UpstreamProblem.DENIED: FailureCode.UPSTREAM_ACCESS_DENIED,
    UpstreamProblem.THROTTLED: FailureCode.UPSTREAM_TOO_MANY_REQUESTS,
    UpstreamProblem.UNAVAILABLE: FailureCode.UPSTREAM_UNAVAILABLE,
    UpstreamProblem.NOT_FOUND: FailureCode.IMAGE_NOT_FOUND,
}


@dataclass(frozen=True, slots=True)
class Secret:
    """What a Secrets Manager secret of a pull through cache rule holds."""

    username: str
    access_token: str


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """What CreatePullThroughCacheRule sets."""

    upstream_url: str
    upstream_registry: str | None = None
    credential_arn: str | None = None
    custom_role_arn: str | None = None
    upstream_prefix: str | None = None


@dataclass(frozen=True, slots=True)
class Validation:
    rule: PullThroughRule
    valid: bool
    failure: str | None


def _stripe(locks: Sequence[threading.Lock], key: tuple[str, ...]) -> threading.Lock:
    return locks[hash(key) % len(locks)]


class PullThroughService:
    def __init__(
        self,
        meta: MetadataStore,
        blobs: BlobStore,
        images: ImageService,
        repositories: RepositoryService,
        templates: CreationTemplateService,
        upstreams: UpstreamFactory,
        *,
        secrets: Mapping[str, Secret] | None = None,
        ttl: float = DEFAULT_TTL,
        clock: Clock = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.meta = meta
        self.blobs = blobs
        self.images = images
        self.repositories = repositories
        self.templates = templates
        self.upstreams = upstreams
        self.secrets = dict(secrets or {})
        self.ttl = ttl
        self.clock = clock
        self.monotonic = monotonic
        self._lock = threading.Lock()
        self._rules: dict[str, tuple[float, list[PullThroughRule]]] = {}
        self._clients: dict[UpstreamEndpoint, UpstreamRegistry] = {}
        self._checked: dict[tuple[str, str, str], float] = {}  # (registry, repo, tag) -> epoch
        self._image_locks = [threading.Lock() for _ in range(_STRIPES)]
        self._blob_locks = [threading.Lock() for _ in range(_STRIPES)]

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

    def _now(self) -> float:
        return float(int(self.clock().timestamp()))

    # --- rules ---------------------------------------------------------------------------------

    def _check_secret(self, arn: str | None) -> None:
        if arn is not None and arn not in self.secrets:
            raise SecretNotFound(arn)

    def _check_role(self, registry_id: str, arn: str | None) -> None:
        if not arn:
            return
        match = _ROLE_ARN.fullmatch(arn)
        if match is None:
            raise InvalidParameter.constraint("customRoleArn", "Invalid role ARN")
        if match.group(1) != account_of(registry_id):
            raise InvalidParameter.constraint(
                "customRoleArn", "The role must be in the same account as the registry"
            )

    def create(self, registry_id: str, prefix: str, spec: RuleSpec) -> PullThroughRule:
        """A new rule. Raises PullThroughCacheRuleAlreadyExists, LimitExceeded,
        InvalidParameter, UnsupportedUpstreamRegistry (not an http(s) registry URL),
        SecretNotFound (a credentialArn the secrets file does not hold)."""
        key = normalize_prefix(prefix)
        url = spec.upstream_url
        if not url.strip():
            raise InvalidParameter.constraint("upstreamRegistryUrl", "Member must not be blank")
        base = parse_upstream_url(url)
        if base is None:
            raise UnsupportedUpstreamRegistry(
                f"The upstream registry URL '{url}' is not supported: openecr caches from OCI "
                "Distribution registries named by host[:port] or an http:// or https:// URL"
            )
        kind = spec.upstream_registry or kind_of_host(base.partition("://")[2].partition("/")[0])
        if (
            spec.upstream_registry is not None
            and UPSTREAM_KINDS[spec.upstream_registry][1]
            and not spec.credential_arn
        ):
            raise InvalidParameter(
                f"Invalid parameter: a credentialArn is required for the upstream registry "
                f"'{spec.upstream_registry}'"
            )
        self._check_secret(spec.credential_arn)
        self._check_role(registry_id, spec.custom_role_arn)
        upstream_prefix = (
            normalize_prefix(spec.upstream_prefix) if spec.upstream_prefix is not None else None
        )
        now = self._now()
        rule = PullThroughRule(
            prefix=key,
            upstream_url=url,
            created_at=now,
            updated_at=now,
            upstream_registry=kind,
            credential_arn=spec.credential_arn,
            custom_role_arn=spec.custom_role_arn or None,
            upstream_prefix=upstream_prefix,
        )
        with self.meta.write() as tx:
            if tx.get_document(registry_id, KIND, key) is not None:
                raise PullThroughCacheRuleAlreadyExists(key, account_of(registry_id))
            if len(tx.list_documents(registry_id, KIND)) >= MAX_RULES:
                raise LimitExceeded(
                    f"The maximum number of pull through cache rules ({MAX_RULES}) for the "
                    f"registry with id '{account_of(registry_id)}' has been reached"
                )
            tx.put_document(registry_id, KIND, key, rule.to_json())
        self._forget_rules(registry_id)
        return rule

    def update(
        self,
        registry_id: str,
        prefix: str,
        credential_arn: str | None,
        custom_role_arn: str | None,
    ) -> PullThroughRule:
        """Change a rule's credentials or role. Raises PullThroughCacheRuleNotFound,
        SecretNotFound, InvalidParameter."""
        key = normalize_prefix(prefix)
        self._check_secret(credential_arn)
        self._check_role(registry_id, custom_role_arn)
        with self.meta.write() as tx:
            body = tx.get_document(registry_id, KIND, key)
            if body is None:
                raise PullThroughCacheRuleNotFound(key, account_of(registry_id))
            rule = PullThroughRule.from_json(body)
            if credential_arn is not None:
                rule = replace(rule, credential_arn=credential_arn)
            if custom_role_arn is not None:
                rule = replace(rule, custom_role_arn=custom_role_arn or None)
            rule = replace(rule, updated_at=self._now())
            tx.put_document(registry_id, KIND, key, rule.to_json())
        self._forget_rules(registry_id)
        return rule

    def delete(self, registry_id: str, prefix: str) -> PullThroughRule:
        """Delete a rule (what it cached stays) and return it; raises
        PullThroughCacheRuleNotFound."""
        key = normalize_prefix(prefix)
        with self.meta.write() as tx:
            body = tx.get_document(registry_id, KIND, key)
            if body is None:
                raise PullThroughCacheRuleNotFound(key, account_of(registry_id))
            tx.delete_document(registry_id, KIND, key)
        self._forget_rules(registry_id)
        return PullThroughRule.from_json(body)

    def get(self, registry_id: str, prefix: str) -> PullThroughRule:
        key = normalize_prefix(prefix)
        with self.meta.read() as tx:
            body = tx.get_document(registry_id, KIND, key)
        if body is None:
            raise PullThroughCacheRuleNotFound(key, account_of(registry_id))
        return PullThroughRule.from_json(body)

    def describe(
        self,
        registry_id: str,
        prefixes: Sequence[str] | None,
        token: str | None,
        max_results: int | None,
    ) -> tuple[list[PullThroughRule], str | None]:
        """Rules in prefix byte order, a page of ``max_results`` (100) at a time; named ones
        must all exist (PullThroughCacheRuleNotFound)."""
        after = decode_token(token, str, "pull-through-cache-rules") if token else None
        with self.meta.read() as tx:
            found = dict(tx.list_documents(registry_id, KIND))
        keys = sorted(found)
        if prefixes:
            wanted = [normalize_prefix(p) for p in prefixes]
            for key in wanted:
                if key not in found:
                    raise PullThroughCacheRuleNotFound(key, account_of(registry_id))
            keys = sorted(set(wanted))
        keys = [k for k in keys if after is None or k > after]
        limit = max_results or PAGE
        page = [PullThroughRule.from_json(found[k]) for k in keys[:limit]]
        more = len(keys) > limit
        return page, encode_token(page[-1].prefix, "pull-through-cache-rules") if more else None

    def validate(self, registry_id: str, prefix: str) -> Validation:
        """Whether the rule's upstream can be reached and logged in to (``GET /v2/``)."""
        rule = self.get(registry_id, prefix)
        try:
            self._client(rule).check()
        except SecretNotFound as error:
            return Validation(rule, False, error.message)
        except UpstreamFailure as failure:
            return Validation(rule, False, failure.message)
        return Validation(rule, True, None)

    def _forget_rules(self, registry_id: str) -> None:
        with self._lock:
            self._rules.pop(registry_id, None)

    def rules(self, registry_id: str, *, fresh: bool = False) -> list[PullThroughRule]:
        """The registry's rules; without ``fresh`` possibly as they were up to
        :data:`RULES_CACHE_SECONDS` ago (in another process's view)."""
        now = self.monotonic()
        if not fresh:
            with self._lock:
                cached = self._rules.get(registry_id)
            if cached is not None and now - cached[0] < RULES_CACHE_SECONDS:
                return cached[1]
        with self.meta.read() as tx:
            found = [
                PullThroughRule.from_json(body) for _, body in tx.list_documents(registry_id, KIND)
            ]
        with self._lock:
            self._rules[registry_id] = (now, found)
        return found

    # --- the source the image and blob services consult ---------------------------------------

    def covers(self, registry_id: str, name: str | None = None) -> bool:
        """Whether a rule covers ``name`` (None: whether the registry has any rule). Cheap: no
        upstream request, at most one metadata read a second."""
        found = self.rules(registry_id)
        if name is None:
            return bool(found)
        return match_rule(found, name) is not None

    def _client(self, rule: PullThroughRule) -> UpstreamRegistry:
        username = password = None
        if rule.credential_arn is not None:
            secret = self.secrets.get(rule.credential_arn)
            if secret is None:
                raise SecretNotFound(rule.credential_arn)
            username, password = secret.username, secret.access_token
        endpoint = UpstreamEndpoint(rule.base_url, username, password)
        with self._lock:
            client = self._clients.get(endpoint)
            if client is None:
                client = self._clients[endpoint] = self.upstreams(endpoint)
        return client

    def _fresh(self, registry_id: str, name: str, repo_id: int, tag: str) -> bool:
        key = (registry_id, name, tag)
        with self._lock:
            checked = self._checked.get(key)
        if checked is None:
            with self.meta.read() as tx:
                body = tx.get_repository_document(repo_id, STATE)
            checked = json.loads(body).get("checked", {}).get(tag) if body else None
            if checked is None:
                return False
            with self._lock:
                self._checked[key] = float(checked)
        return self._now() - float(checked) < self.ttl

    def _mark_checked(self, registry_id: str, name: str, tag: str) -> None:
        now = self._now()
        with self._lock:
            self._checked[(registry_id, name, tag)] = now
        with self.meta.write() as tx:
            repo = tx.get_repository(registry_id, name)
            if repo is None:
                return
            body = tx.get_repository_document(repo.id, STATE)
            doc = json.loads(body) if body else {}
            doc.setdefault("checked", {})[tag] = now
            tx.put_repository_document(repo.id, STATE, json.dumps(doc, sort_keys=True))

    def ensure_image(self, registry_id: str, name: str, image_id: ImageId) -> None:
        """Make a pull of ``image_id`` from ``name`` find what the upstream has, if a rule
        covers ``name``: fetch the image when it is not stored, re-check a cached tag that is
        due. Raises UnableToGetUpstreamImage when the upstream cannot answer and nothing is cached
        (SecretNotFound when the rule's secret is gone); never when a cached copy exists."""
        found = match_rule(self.rules(registry_id, fresh=True), name)
        if found is None or (image_id.tag is None and image_id.digest is None):
            return
        rule, upstream_repo = found
        tag = image_id.tag
        with _stripe(self._image_locks, (registry_id, name, tag or image_id.digest or "")):
            with self.meta.read() as tx:
                repo_id, cached = tx.lookup_image(registry_id, name, tag, image_id.digest)
            if cached is not None and (
                tag is None
                or (repo_id is not None and self._fresh(registry_id, name, repo_id, tag))
            ):
                return
            reference = tag if tag is not None else str(image_id.digest)
            try:
                client = self._client(rule)
                if cached is not None:
                    digest = client.manifest_digest(upstream_repo, reference, ACCEPT)
                    if digest == cached.digest:
                        self._mark_checked(registry_id, name, reference)
                        return
                self._fetch(client, registry_id, name, upstream_repo, reference, tag)
            except UpstreamFailure as failure:
                if cached is not None:
                    log.warning(
                        "serving the cached %s:%s: the upstream %s failed: %s",
                        name,
                        reference,
                        rule.upstream_url,
                        failure.message,
                    )
                    return
                if failure.problem is UpstreamProblem.NOT_FOUND:
                    return  # the pull answers ImageNotFound
                raise UnableToGetUpstreamImage(
                    f"Unable to get the image '{reference}' of '{upstream_repo}' from the "
                    f"upstream registry '{rule.upstream_url}': {failure.message}",
                    _FAILURE_CODES[failure.problem].value,
                ) from None
            except SecretNotFound as error:
                if cached is None:
                    raise UnableToGetUpstreamImage(
                        f"Unable to get the image '{reference}' of '{upstream_repo}': "
                        f"{error.message}",
                        FailureCode.UPSTREAM_ACCESS_DENIED.value,
                    ) from None
                return
            if tag is not None:
                self._mark_checked(registry_id, name, tag)

    def _create_repository(self, registry_id: str, name: str) -> None:
        with self.meta.read() as tx:
            if tx.get_repository(registry_id, name) is not None:
                return
        spec = self.templates.apply(registry_id, name, AppliedFor.PULL_THROUGH_CACHE)
        with contextlib.suppress(RepositoryAlreadyExists):  # a concurrent pull created it
            self.repositories.create(registry_id, spec)

    def _download(
        self, client: UpstreamRegistry, upstream_repo: str, reference: str
    ) -> tuple[bytes, str | None]:
        """A manifest's bytes and media type, verified: they hash to the digest asked for (by
        digest) and to the ``Docker-Content-Digest`` the upstream sent. Raises
        UpstreamFailure (UNAVAILABLE for bytes that do not verify)."""
        got = client.manifest(upstream_repo, reference, ACCEPT)
        claimed = [d for d in (got.digest, reference if ":" in reference else None) if d]
        for value in claimed:
            digest = Digest.try_parse(value)
            if digest is None or hashlib.new(digest.algorithm, got.body).hexdigest() != digest.hex:
                raise UpstreamFailure(
                    UpstreamProblem.UNAVAILABLE,
                    f"the upstream's manifest for '{reference}' does not hash to {value}",
                )
        media_type = got.media_type if got.media_type in mt.MANIFEST_TYPES else None
        return got.body, media_type

    def _fetch(
        self,
        client: UpstreamRegistry,
        registry_id: str,
        name: str,
        upstream_repo: str,
        reference: str,
        tag: str | None,
        depth: int = 0,
    ) -> None:
        """Fetch a manifest (an index with its children first) and store it under ``tag``."""
        raw, media_type = self._download(client, upstream_repo, reference)
        try:
            manifest = parse_manifest(raw, media_type)
        except ManifestInvalid as error:
            raise UpstreamFailure(
                UpstreamProblem.UNAVAILABLE, f"the upstream's manifest is invalid: {error.message}"
            ) from None
        self._create_repository(registry_id, name)
        if manifest.is_index:
            if depth > 1:
                raise UpstreamFailure(UpstreamProblem.UNAVAILABLE, "indexes nest too deeply")
            with self.meta.read() as tx:
                repo = tx.get_repository(registry_id, name)
                missing = [
                    c.digest
                    for c in manifest.children
                    if repo is None or tx.get_image(repo.id, c.digest) is None
                ]
            for child in dict.fromkeys(missing):
                self._fetch(client, registry_id, name, upstream_repo, child, None, depth + 1)
        algorithm = Digest.parse(reference).algorithm if ":" in reference else "sha256"
        self.images.store_manifest(
            registry_id,
            name,
            raw,
            media_type,
            tag,
            None,
            idempotent=True,
            algorithm=algorithm,
            lenient=True,  # layers come when they are pulled (ensure_blob)
        )

    def ensure_blob(self, registry_id: str, name: str, digest: Digest) -> None:
        """Make a pull of blob ``digest`` from ``name`` find it, if a rule covers ``name`` and
        the repository does not hold it: link the bytes when the store has them, else stream
        them from the upstream into the store (verified) and link them. Raises
        UnableToGetUpstreamLayer when the upstream cannot give it (not when it has none:
        the pull answers its own not-found error)."""
        found = match_rule(self.rules(registry_id, fresh=True), name)
        if found is None:
            return
        rule, upstream_repo = found
        with _stripe(self._blob_locks, (registry_id, name, str(digest))):
            with self.meta.read() as tx:
                repo = tx.get_repository(registry_id, name)
                if repo is not None and tx.get_linked_blob(repo.id, digest) is not None:
                    return
                known = tx.get_blob(digest)
            size = self.blobs.stat(digest)
            if size is None:
                try:
                    size = self._stream_blob(self._client(rule), upstream_repo, digest)
                except SecretNotFound as error:
                    raise UnableToGetUpstreamLayer(error.message) from None
                except UpstreamFailure as failure:
                    if failure.problem is UpstreamProblem.NOT_FOUND:
                        return
                    raise UnableToGetUpstreamLayer(
                        f"Unable to get the layer '{digest}' of '{upstream_repo}' from the "
                        f"upstream registry '{rule.upstream_url}': {failure.message}"
                    ) from None
            self._create_repository(registry_id, name)
            blob = BlobInfo(str(digest), size, known.media_type if known else None)
            with self.meta.write() as tx:
                repo = tx.get_repository(registry_id, name)
                # refreshed in the link's transaction, so a garbage collection that forgot the
                # blob meanwhile keeps it or took it already (docs/garbage-collection.md)
                if repo is not None and self.blobs.touch(digest):
                    tx.link_blob(repo.id, blob)

    def _stream_blob(self, client: UpstreamRegistry, upstream_repo: str, digest: Digest) -> int:
        """Copy a blob from the upstream into the store, verified; return its size."""
        upstream = client.blob(upstream_repo, str(digest))
        state = self.blobs.begin()
        try:
            writer = self.blobs.writer(state)
            try:
                for chunk in upstream.chunks():
                    writer.write((chunk,))
                state = writer.finish()
            except BaseException:
                writer.abort()
                raise
            if upstream.size is not None and state.size != upstream.size:
                raise UpstreamFailure(
                    UpstreamProblem.UNAVAILABLE,
                    f"the upstream sent {state.size} of the blob's {upstream.size} bytes",
                )
            try:
                self.blobs.commit(state, digest)
            except InvalidLayer:
                raise UpstreamFailure(
                    UpstreamProblem.UNAVAILABLE, f"the upstream's blob does not hash to {digest}"
                ) from None
        except BaseException:
            upstream.close()
            with contextlib.suppress(Exception):
                self.blobs.abort(state)
            raise
        return state.size


__all__ = ["ROOT", "PullThroughService", "RuleSpec", "Secret", "Validation"]
