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
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace

from openecr.domain import mediatypes as mt
from openecr.domain.creation_templates import AppliedFor
from openecr.domain.digest import Digest
from openecr.domain.manifest import parse_manifest
from openecr.domain.model import BlobInfo, FailureCode, ImageId, Repository
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
    AccessDenied,
    InvalidLayer,
    InvalidParameter,
    LimitExceeded,
    ManifestInvalid,
    PullThroughCacheRuleAlreadyExists,
    PullThroughCacheRuleNotFound,
    PushToPullThroughCache,
    RepositoryAlreadyExists,
    SecretNotFound,
    UnableToGetUpstreamImage,
    UnableToGetUpstreamLayer,
    UnsupportedUpstreamRegistry,
)
from openecr.ports.metadata import MetadataStore, Transaction
from openecr.ports.upstream import (
    UpstreamBlob,
    UpstreamEndpoint,
    UpstreamFactory,
    UpstreamFailure,
    UpstreamProblem,
    UpstreamRegistry,
)
from openecr.service.blobstore import BlobStore, CheckedWriter
from openecr.service.common import Clock, Permit, utcnow
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
        self._fills: dict[tuple[str, str, str], threading.Event] = {}  # blob fetches running

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

    def rules(
        self, registry_id: str, *, fresh: bool = False, tx: Transaction | None = None
    ) -> list[PullThroughRule]:
        """The registry's rules; without ``fresh`` possibly as they were up to
        :data:`RULES_CACHE_SECONDS` ago (in another process's view). Read through ``tx``
        when given (the caller's transaction), else in a read transaction of their own."""
        now = self.monotonic()
        if not fresh:
            cached = self._rules.get(registry_id)  # one dict read: atomic, no lock needed
            if cached is not None and now - cached[0] < RULES_CACHE_SECONDS:
                return cached[1]
        if tx is not None:
            found = [PullThroughRule.from_json(b) for _, b in tx.list_documents(registry_id, KIND)]
        else:
            with self.meta.read() as own:
                found = [
                    PullThroughRule.from_json(b) for _, b in own.list_documents(registry_id, KIND)
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

    def ensure_image(
        self, registry_id: str, name: str, image_id: ImageId, permit: Permit | None = None
    ) -> None:
        """Make a pull of ``image_id`` from ``name`` find what the upstream has, if a rule
        covers ``name``: fetch the image when it is not stored, re-check a cached tag that is
        due. Raises UnableToGetUpstreamImage when the upstream cannot answer and nothing is cached
        (SecretNotFound when the rule's secret is gone); never when a cached copy exists.
        Before it imports anything, ``permit`` must let the caller (AccessDenied): see
        :meth:`_permit_import`."""
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
                    try:
                        self._permit_import(registry_id, name, permit)
                    except AccessDenied:
                        return  # this caller may not refresh it: the cached copy is served
                else:
                    self._permit_import(registry_id, name, permit)
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
        """Make ``name`` a pull-through cache repository: create it (with the
        PULL_THROUGH_CACHE template) when missing, and mark it as the cache's (its ``STATE``
        document), so it stays one when the rule is deleted."""
        with self.meta.read() as tx:
            repo = tx.get_repository(registry_id, name)
            if repo is not None and tx.get_repository_document(repo.id, STATE) is not None:
                return
        if repo is None:
            spec = self.templates.apply(registry_id, name, AppliedFor.PULL_THROUGH_CACHE)
            with contextlib.suppress(RepositoryAlreadyExists):  # a concurrent pull created it
                self.repositories.create(registry_id, spec)
        found = match_rule(self.rules(registry_id), name)
        with self.meta.write() as tx:
            repo = tx.get_repository(registry_id, name)
            if repo is None or tx.get_repository_document(repo.id, STATE) is not None:
                return
            doc: dict[str, object] = {"rule": found[0].prefix if found else None, "checked": {}}
            tx.put_repository_document(repo.id, STATE, json.dumps(doc, sort_keys=True))

    def check_push(self, tx: Transaction, repo: Repository) -> None:
        """Raises PushToPullThroughCache when ``repo`` is a pull-through cache repository: one
        a rule covers, or one the cache has written to (marked: deleting the rule does not
        open it to pushes). Only the cache's own writes go there."""
        rules = self.rules(repo.registry_id, tx=tx)
        if match_rule(rules, repo.name) is not None or (
            tx.get_repository_document(repo.id, STATE) is not None
        ):
            raise PushToPullThroughCache(repo.name, account_of(repo.registry_id))

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
            cache=True,  # the cache's own write into its repository
        )

    def _claim(self, key: tuple[str, str, str]) -> threading.Event:
        """Become the one fetch of blob ``key`` in this process: wait while another fetch of it
        runs (the caller then looks again for what it stored), then register. The caller
        releases the claim with :meth:`_release` on every path."""
        while True:
            with self._lock:
                running = self._fills.get(key)
                if running is None:
                    claim = self._fills[key] = threading.Event()
                    return claim
            running.wait()

    def _release(self, key: tuple[str, str, str], claim: threading.Event) -> None:
        with self._lock:
            if self._fills.get(key) is claim:
                del self._fills[key]
        claim.set()

    def _link_stored(self, registry_id: str, name: str, digest: Digest) -> bool:
        """Whether the repository holds blob ``digest`` now: linked already, or the store
        has the bytes and they were linked here."""
        with self.meta.read() as tx:
            repo = tx.get_repository(registry_id, name)
            if repo is not None and tx.get_linked_blob(repo.id, digest) is not None:
                return True
        size = self.blobs.stat(digest)
        return size is not None and self._link(registry_id, name, digest, size)

    def _link(self, registry_id: str, name: str, digest: Digest, size: int) -> bool:
        """Link stored bytes into the repository (created when missing); False when a garbage
        collection took them meanwhile."""
        self._create_repository(registry_id, name)
        with self.meta.write() as tx:
            known = tx.get_blob(digest)
            blob = BlobInfo(str(digest), size, known.media_type if known else None)
            repo = tx.get_repository(registry_id, name)
            # refreshed in the link's transaction, so a garbage collection that forgot the
            # blob meanwhile keeps it or took it already (docs/garbage-collection.md)
            if repo is None or not self.blobs.touch(digest):
                return False
            tx.link_blob(repo.id, blob)
        return True

    def _permit_import(self, registry_id: str, name: str, permit: Permit | None) -> None:
        """The caller's right to make the cache import into ``name``: ecr:CreateRepository
        when the repository does not exist yet, and ecr:BatchImportUpstreamImage. Raises
        AccessDenied (from ``permit``)."""
        if permit is None:
            return
        with self.meta.read() as tx:
            missing = tx.get_repository(registry_id, name) is None
        if missing:
            permit("CreateRepository")
        permit("BatchImportUpstreamImage")

    def _layer_error(
        self, rule: PullThroughRule, upstream_repo: str, digest: Digest, failure: UpstreamFailure
    ) -> UnableToGetUpstreamLayer:
        return UnableToGetUpstreamLayer(
            f"Unable to get the layer '{digest}' of '{upstream_repo}' from the upstream "
            f"registry '{rule.upstream_url}': {failure.message}"
        )

    def ensure_blob(
        self, registry_id: str, name: str, digest: Digest, permit: Permit | None = None
    ) -> None:
        """Make a pull of blob ``digest`` from ``name`` find it, if a rule covers ``name`` and
        the repository does not hold it: link the bytes when the store has them, else copy
        them from the upstream into the store (verified) and link them. Raises
        UnableToGetUpstreamLayer when the upstream cannot give it (not when it has none:
        the pull answers its own not-found error), and what ``permit`` raises."""
        found = match_rule(self.rules(registry_id, fresh=True), name)
        if found is None:
            return
        rule, upstream_repo = found
        key = (registry_id, name, str(digest))
        claim = self._claim(key)
        try:
            if self._link_stored(registry_id, name, digest):
                return
            self._permit_import(registry_id, name, permit)
            try:
                size = self._copy_blob(self._client(rule), upstream_repo, digest)
            except SecretNotFound as error:
                raise UnableToGetUpstreamLayer(error.message) from None
            except UpstreamFailure as failure:
                if failure.problem is UpstreamProblem.NOT_FOUND:
                    return
                raise self._layer_error(rule, upstream_repo, digest, failure) from None
            self._link(registry_id, name, digest, size)
        finally:
            self._release(key, claim)

    def stream_blob(
        self, registry_id: str, name: str, digest: Digest, permit: Permit | None = None
    ) -> StreamedBlob | None:
        """A first pull of blob ``digest`` from ``name`` (a rule covers it, the repository
        does not hold it): the upstream's bytes, streamed to the caller while they are written
        to the store. The last piece is held back until the whole blob hashes to ``digest``
        and is stored and linked; a blob that does not verify or an upstream that breaks off
        stores nothing, and the iterator raises UnableToGetUpstreamLayer instead of giving the
        rest (the caller aborts its transfer). The caller must close the iterator.

        None when there is nothing to stream: the blob is linked now (found in the store, or
        fetched whole when the upstream does not say its size), or the upstream has none.
        Concurrent pulls of one blob in this process fetch it once: a second one waits for
        the first to end, then finds it stored (or fetches it when the first failed). Raises
        UnableToGetUpstreamLayer when the upstream cannot start the transfer, and what
        ``permit`` raises."""
        found = match_rule(self.rules(registry_id, fresh=True), name)
        if found is None:
            return None
        rule, upstream_repo = found
        key = (registry_id, name, str(digest))
        claim = self._claim(key)
        handed_over = False
        try:
            if self._link_stored(registry_id, name, digest):
                return None
            self._permit_import(registry_id, name, permit)
            try:
                client = self._client(rule)
                upstream = client.blob(upstream_repo, str(digest))
            except SecretNotFound as error:
                raise UnableToGetUpstreamLayer(error.message) from None
            except UpstreamFailure as failure:
                if failure.problem is UpstreamProblem.NOT_FOUND:
                    return None
                raise self._layer_error(rule, upstream_repo, digest, failure) from None
            if upstream.size is None:  # no length to promise the client: cache it first
                try:
                    size = self._copy_from(upstream, digest)
                except UpstreamFailure as failure:
                    raise self._layer_error(rule, upstream_repo, digest, failure) from None
                self._link(registry_id, name, digest, size)
                return None
            tee = _Tee(
                self,
                upstream,
                digest,
                lambda size: self._link(registry_id, name, digest, size),
                lambda failure: self._layer_error(rule, upstream_repo, digest, failure),
                lambda: self._release(key, claim),
            )
            handed_over = True
            with self.meta.read() as tx:
                known = tx.get_blob(digest)
            info = BlobInfo(str(digest), upstream.size, known.media_type if known else None)
            return StreamedBlob(info, tee)
        finally:
            if not handed_over:
                self._release(key, claim)

    def _copy_blob(self, client: UpstreamRegistry, upstream_repo: str, digest: Digest) -> int:
        """Copy a blob from the upstream into the store, verified; return its size."""
        return self._copy_from(client.blob(upstream_repo, str(digest)), digest)

    def _copy_from(self, upstream: UpstreamBlob, digest: Digest) -> int:
        fill = _Fill(self.blobs, upstream, digest)
        try:
            for chunk in upstream.chunks():
                fill.write(chunk)
            return fill.commit()
        finally:
            fill.close()


@dataclass(frozen=True, slots=True)
class StreamedBlob:
    """A blob on its way from the upstream (see :meth:`PullThroughService.stream_blob`)."""

    blob: BlobInfo
    chunks: _Tee


class _Fill:
    """One upstream blob being written into the store: ``write`` pieces, ``commit`` (verify
    the length and digest, store; raises UpstreamFailure), ``close`` (drops what was not
    committed; idempotent)."""

    def __init__(self, blobs: BlobStore, upstream: UpstreamBlob, digest: Digest) -> None:
        self.blobs = blobs
        self.upstream = upstream
        self.digest = digest
        self.state = blobs.begin()
        self.writer: CheckedWriter | None = None
        self.committed = False
        try:
            self.writer = blobs.writer(self.state)
        except BaseException:
            self.close()
            raise

    def write(self, chunk: bytes) -> None:
        assert self.writer is not None
        self.writer.write((chunk,))

    def commit(self) -> int:
        assert self.writer is not None
        writer, self.writer = self.writer, None
        self.state = writer.finish()
        declared = self.upstream.size
        if declared is not None and self.state.size != declared:
            raise UpstreamFailure(
                UpstreamProblem.UNAVAILABLE,
                f"the upstream sent {self.state.size} of the blob's {declared} bytes",
            )
        try:
            self.blobs.commit(self.state, self.digest)
        except InvalidLayer:
            raise UpstreamFailure(
                UpstreamProblem.UNAVAILABLE, f"the upstream's blob does not hash to {self.digest}"
            ) from None
        self.committed = True
        return self.state.size

    def close(self) -> None:
        self.upstream.close()
        if self.committed:
            return
        self.committed = True  # closed: nothing more to drop
        writer, self.writer = self.writer, None
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.abort()
        with contextlib.suppress(Exception):
            self.blobs.abort(self.state)


class _Tee:
    """The iterator :meth:`PullThroughService.stream_blob` hands out: each upstream piece is
    written to the store, then given to the client one piece late, so the last one is given
    only once the blob is verified, stored and linked (``link``). A failure drops what was
    written and raises ``error(failure)``. Closing it (or its being collected unfinished)
    ends the transfer, drops what was written and releases the fetch (``release``)."""

    def __init__(
        self,
        service: PullThroughService,
        upstream: UpstreamBlob,
        digest: Digest,
        link: Callable[[int], bool],
        error: Callable[[UpstreamFailure], UnableToGetUpstreamLayer],
        release: Callable[[], None],
    ) -> None:
        self._release: Callable[[], None] | None = release
        self._link = link
        self._error = error
        self._digest = digest
        self._upstream = upstream
        self._fill: _Fill | None = None
        self._fill = _Fill(service.blobs, upstream, digest)
        self._chunks = self._pieces()

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        return next(self._chunks)

    def _pieces(self) -> Iterator[bytes]:
        fill = self._fill
        assert fill is not None
        try:
            held: bytes | None = None
            for chunk in self._upstream.chunks():
                fill.write(chunk)
                if held:
                    yield held
                held = chunk
            size = fill.commit()
            if not self._link(size):
                raise UpstreamFailure(
                    UpstreamProblem.UNAVAILABLE, "the blob was collected while it was cached"
                )
        except UpstreamFailure as failure:
            log.warning("a streamed pull of %s stopped: %s", self._digest, failure.message)
            raise self._error(failure) from None
        finally:
            self.close()
        if held:
            yield held

    def close(self) -> None:
        """End the transfer (idempotent): drop what was not stored, release the fetch."""
        fill, self._fill = self._fill, None
        if fill is not None:
            fill.close()
        release, self._release = self._release, None
        if release is not None:
            release()

    def __del__(self) -> None:
        self.close()


__all__ = ["ROOT", "PullThroughService", "RuleSpec", "Secret", "StreamedBlob", "Validation"]
