"""Repository use cases: create, describe, delete, tag mutability, resource tags."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from openecr.domain import names as domain_names
from openecr.domain.model import ExclusionFilter, Repository, TagMutability
from openecr.domain.registries import account_of
from openecr.errors import (
    InvalidParameter,
    InvalidTagParameter,
    RepositoryAlreadyExists,
    RepositoryNotEmpty,
    TooManyTags,
)
from openecr.ports.metadata import MetadataStore
from openecr.service.blobstore import BlobStore
from openecr.service.common import Clock, require_repository, utcnow
from openecr.service.paging import decode_token, encode_token

MAX_RESOURCE_TAGS = 50
_EXCLUSION_MODES = (TagMutability.IMMUTABLE_WITH_EXCLUSION, TagMutability.MUTABLE_WITH_EXCLUSION)


def check_mutability(
    mutability: TagMutability, filters: Sequence[ExclusionFilter] | None
) -> tuple[ExclusionFilter, ...]:
    """Exclusion filters go with the *_WITH_EXCLUSION modes, and only with them."""
    if mutability in _EXCLUSION_MODES and not filters:
        raise InvalidParameter.constraint(
            "imageTagMutabilityExclusionFilters",
            "ImageTagMutabilityExclusionFilters can't be null when imageTagMutability is set "
            f"as {mutability.value}",
        )
    if mutability not in _EXCLUSION_MODES and filters:
        raise InvalidParameter.constraint(
            "imageTagMutabilityExclusionFilters",
            "ImageTagMutabilityExclusionFilters can only be set when imageTagMutability is "
            f"set as {' or '.join(m.value for m in _EXCLUSION_MODES)}",
        )
    return tuple(filters or ())


_TAG_PUNCTUATION = frozenset("_.:/=+-@")
_AWS_PREFIX = "aws:"


def _is_tag_text(value: str) -> bool:
    """AWS's tag alphabet, ``[\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*``: Unicode letters, separators
    (spaces) and numbers, and a few punctuation marks; no control characters."""
    return all(c in _TAG_PUNCTUATION or unicodedata.category(c)[0] in "LZN" for c in value)


def check_resource_tags(tags: Sequence[tuple[str, str]]) -> None:
    """Tag keys are 1..128 and values 0..256 characters of AWS's tag alphabet; ``aws:`` keys
    are reserved. Raises InvalidTagParameter."""
    for key, value in tags:
        if not 1 <= len(key) <= 128:
            raise InvalidTagParameter(
                "Invalid parameter at 'tags' failed to satisfy constraint: "
                "'Tag keys must be between 1 and 128 characters long'"
            )
        if len(value) > 256:
            raise InvalidTagParameter(
                "Invalid parameter at 'tags' failed to satisfy constraint: "
                "'Tag values must be at most 256 characters long'"
            )
        if not _is_tag_text(key) or not _is_tag_text(value):
            raise InvalidTagParameter(
                "Invalid parameter at 'tags' failed to satisfy constraint: 'Tag keys and values "
                "may contain only Unicode letters, digits, white space and the characters "
                "_ . : / = + - @'"
            )
        check_tag_key_not_reserved(key)


def check_tag_key_not_reserved(key: str) -> None:
    if key.lower().startswith(_AWS_PREFIX):
        raise InvalidTagParameter("Tag keys that start with 'aws:' are reserved for AWS use")


@dataclass(frozen=True, slots=True)
class NewRepository:
    name: str
    tag_mutability: TagMutability = TagMutability.MUTABLE
    exclusion_filters: tuple[ExclusionFilter, ...] | None = None
    scan_on_push: bool = False
    encryption_type: str = "AES256"
    kms_key: str | None = None
    tags: tuple[tuple[str, str], ...] = ()
    # (kind, body) repository documents stored with the new repository (from a template)
    documents: tuple[tuple[str, str], ...] = ()


class RepositoryService:
    def __init__(
        self, meta: MetadataStore, clock: Clock = utcnow, blobs: BlobStore | None = None
    ) -> None:
        self.meta = meta
        self.clock = clock
        self.blobs = blobs  # where deleted repositories' upload sessions are dropped

    def create(self, registry_id: str, spec: NewRepository) -> Repository:
        """Create a repository; raises RepositoryAlreadyExists, InvalidParameter, TooManyTags."""
        filters = check_mutability(spec.tag_mutability, spec.exclusion_filters)
        check_resource_tags(spec.tags)
        if len(dict(spec.tags)) > MAX_RESOURCE_TAGS:
            raise TooManyTags(f"A repository can have at most {MAX_RESOURCE_TAGS} tags")
        if spec.encryption_type == "AES256" and spec.kms_key:
            raise InvalidParameter.constraint(
                "encryptionConfiguration", "kmsKey can only be specified with KMS encryption"
            )
        with self.meta.write() as tx:
            if tx.get_repository(registry_id, spec.name) is not None:
                raise RepositoryAlreadyExists(spec.name, account_of(registry_id))
            repo = tx.create_repository(
                Repository(
                    id=0,
                    registry_id=registry_id,
                    name=spec.name,
                    created_at=self.clock(),
                    tag_mutability=spec.tag_mutability,
                    exclusion_filters=filters,
                    scan_on_push=spec.scan_on_push,
                    encryption_type=spec.encryption_type,
                    kms_key=spec.kms_key,
                )
            )
            tx.put_resource_tags(repo.id, spec.tags)
            for kind, body in spec.documents:
                tx.put_repository_document(repo.id, kind, body)
            return repo

    def describe(
        self,
        registry_id: str,
        names: Sequence[str] | None,
        token: str | None,
        max_results: int | None,
    ) -> tuple[list[Repository], str | None]:
        """Named repositories in request order (raises RepositoryNotFound for the first
        missing one), or every repository of the registry by name, one page at a time."""
        with self.meta.read() as tx:
            if names:
                if token is not None or max_results is not None:
                    raise InvalidParameter(
                        "Invalid parameter: 'maxResults' and 'nextToken' cannot be used with "
                        "'repositoryNames'"
                    )
                return [require_repository(tx, registry_id, n) for n in names], None
            limit = max_results or 100
            after = decode_token(token, str, "repositories") if token else None
            if after is not None and not domain_names.is_repository_name(after):
                raise InvalidParameter.constraint("nextToken", "Invalid NextToken")
            found = tx.list_repositories(registry_id, after, limit + 1)
        more = len(found) > limit
        found = found[:limit]
        return found, encode_token(found[-1].name, "repositories") if more else None

    def delete(self, registry_id: str, name: str, force: bool) -> Repository:
        """Delete a repository; without ``force`` it must hold no images. Its open upload
        sessions go with it, bytes included; its blobs stay for garbage collection."""
        with self.meta.write() as tx:
            repo = require_repository(tx, registry_id, name)
            if not force and tx.count_images(repo.id) > 0:
                raise RepositoryNotEmpty(name, account_of(registry_id))
            sessions = tx.list_uploads(repo.id)
            tx.delete_repository(repo.id)
        if self.blobs is not None:
            for session in sessions:
                self.blobs.abort(session.state)
        return repo

    def put_tag_mutability(
        self,
        registry_id: str,
        name: str,
        mutability: TagMutability,
        filters: Sequence[ExclusionFilter] | None,
    ) -> Repository:
        checked = check_mutability(mutability, filters)
        with self.meta.write() as tx:
            repo = require_repository(tx, registry_id, name)
            tx.set_tag_mutability(repo.id, mutability, checked)
            updated = tx.get_repository(registry_id, name)
            assert updated is not None
            return updated

    def list_resource_tags(self, registry_id: str, name: str) -> list[tuple[str, str]]:
        with self.meta.read() as tx:
            repo = require_repository(tx, registry_id, name)
            return tx.get_resource_tags(repo.id)

    def tag_resource(self, registry_id: str, name: str, tags: Sequence[tuple[str, str]]) -> None:
        check_resource_tags(tags)
        with self.meta.write() as tx:
            repo = require_repository(tx, registry_id, name)
            merged = dict(tx.get_resource_tags(repo.id))
            merged.update(dict(tags))
            if len(merged) > MAX_RESOURCE_TAGS:
                raise TooManyTags(f"A repository can have at most {MAX_RESOURCE_TAGS} tags")
            tx.put_resource_tags(repo.id, tags)

    def untag_resource(self, registry_id: str, name: str, keys: Sequence[str]) -> None:
        for key in keys:
            check_tag_key_not_reserved(key)
        with self.meta.write() as tx:
            repo = require_repository(tx, registry_id, name)
            tx.delete_resource_tags(repo.id, keys)

    def catalog(self, registry_id: str, after: str | None, limit: int) -> tuple[list[str], bool]:
        """The registry API's ``_catalog``: repository names of a registry in order, those
        after ``after`` only, at most ``limit``, and whether more follow."""
        with self.meta.read() as tx:
            found = tx.list_repositories(registry_id, after, limit + 1)
        return [repo.name for repo in found[:limit]], len(found) > limit
