"""Frozen records the core passes around."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class TagMutability(StrEnum):
    MUTABLE = "MUTABLE"
    IMMUTABLE = "IMMUTABLE"
    IMMUTABLE_WITH_EXCLUSION = "IMMUTABLE_WITH_EXCLUSION"
    MUTABLE_WITH_EXCLUSION = "MUTABLE_WITH_EXCLUSION"


@dataclass(frozen=True, slots=True)
class ExclusionFilter:
    """A WILDCARD tag filter (``*`` matches any run of characters)."""

    filter: str
    filter_type: str = "WILDCARD"

    def matches(self, tag: str) -> bool:
        # fnmatch also treats ? and [ ] specially; ECR's filter alphabet has neither.
        return fnmatch.fnmatchcase(tag, self.filter)


@dataclass(frozen=True, slots=True)
class Repository:
    id: int
    registry_id: str
    name: str
    created_at: datetime
    tag_mutability: TagMutability = TagMutability.MUTABLE
    exclusion_filters: tuple[ExclusionFilter, ...] = ()
    scan_on_push: bool = False
    encryption_type: str = "AES256"
    kms_key: str | None = None

    def tag_is_immutable(self, tag: str) -> bool:
        """Whether an existing ``tag`` may not be moved, honouring exclusion filters."""
        excluded = any(f.matches(tag) for f in self.exclusion_filters)
        if self.tag_mutability is TagMutability.IMMUTABLE:
            return True
        if self.tag_mutability is TagMutability.IMMUTABLE_WITH_EXCLUSION:
            return not excluded
        if self.tag_mutability is TagMutability.MUTABLE_WITH_EXCLUSION:
            return excluded
        return False


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """A stored manifest: its verbatim bytes and what was derived from them at push time."""

    repository_id: int
    digest: str
    manifest: bytes
    media_type: str
    artifact_media_type: str | None
    size: int
    pushed_at: datetime
    subject: str | None = None
    last_pull: datetime | None = None
    seq: int = 0  # the store's push-order key, for pagination


@dataclass(frozen=True, slots=True)
class ImageView:
    """An image with its tags, as listed or described."""

    image: ImageRecord
    tags: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class BlobInfo:
    digest: str
    size: int
    media_type: str | None = None


@dataclass(frozen=True, slots=True)
class UploadSession:
    id: str
    repository_id: int
    created_at: datetime
    size: int = 0
    parts: int = 0


@dataclass(frozen=True, slots=True)
class ImageId:
    """What a request named: either field may be absent."""

    digest: str | None = None
    tag: str | None = None


class FailureCode(StrEnum):
    INVALID_IMAGE_DIGEST = "InvalidImageDigest"
    INVALID_IMAGE_TAG = "InvalidImageTag"
    IMAGE_TAG_DOES_NOT_MATCH_DIGEST = "ImageTagDoesNotMatchDigest"
    IMAGE_NOT_FOUND = "ImageNotFound"
    MISSING_DIGEST_AND_TAG = "MissingDigestAndTag"
    IMAGE_REFERENCED_BY_MANIFEST_LIST = "ImageReferencedByManifestList"


@dataclass(frozen=True, slots=True)
class ImageFailure:
    image_id: ImageId
    code: FailureCode
    reason: str


@dataclass(frozen=True, slots=True)
class ResolvedImage:
    """One BatchGetImage result: the image, the tag it is reported under, and what is served."""

    image: ImageRecord
    tag: str | None
    manifest: bytes
    media_type: str


@dataclass(frozen=True, slots=True)
class Page:
    """A page of results and the opaque key to continue after, if any."""

    items: tuple[object, ...]
    next_key: str | None
