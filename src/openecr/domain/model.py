"""Frozen records the core passes around."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from openecr.domain.records import quick_init


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


@quick_init
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


@quick_init
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
    seq: int = 0  # the store's push-order key, for pagination
    storage_class: str = "STANDARD"  # or ARCHIVE (ImageStatus ARCHIVED): not pullable
    last_archived_at: datetime | None = None
    last_activated_at: datetime | None = None
    last_pulled_at: datetime | None = None  # recorded at most once per image per interval


@dataclass(frozen=True, slots=True)
class ScanSummary:
    """An image's last scan as DescribeImages reports it (``imageScanStatus`` and, once the
    scan completed, ``imageScanFindingsSummary``)."""

    status: str  # IN_PROGRESS | COMPLETE | FAILED | UNSUPPORTED_IMAGE
    description: str | None
    completed_at: datetime | None = None
    source_updated_at: datetime | None = None
    severity_counts: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class ImageView:
    """An image with its tags, as listed or described (with its last scan, where the
    scanning service annotated it)."""

    image: ImageRecord
    tags: tuple[str, ...] = field(default_factory=tuple)
    scan: ScanSummary | None = None


@dataclass(frozen=True, slots=True)
class RepositoryStats:
    """What a repository holds: images, their sizes summed (shared layers counted once per
    image) and the time of the last push."""

    images: int
    size: int
    last_pushed_at: datetime | None


@quick_init
@dataclass(frozen=True, slots=True)
class ImageSnapshot:
    """Some images of one repository, read at once for a batch of ids.

    ``tags`` maps each asked tag that exists to its digest; ``images`` holds the asked digests
    and those tags' images that exist; ``tags_by_digest`` lists the tags of images (those
    asked by digest, or all), most recently set first. Answers the same reads as a
    transaction for what it holds (see ``openecr.ports.metadata.ImageReads``)."""

    repository_id: int
    tags: Mapping[str, str]
    images: Mapping[str, ImageRecord]
    tags_by_digest: Mapping[str, tuple[str, ...]]

    def get_tag(self, repo_id: int, tag: str) -> str | None:
        assert repo_id == self.repository_id
        return self.tags.get(tag)

    def get_image(self, repo_id: int, digest: str) -> ImageRecord | None:
        assert repo_id == self.repository_id
        return self.images.get(digest)

    def tags_of(self, repo_id: int, digest: str) -> list[str]:
        assert repo_id == self.repository_id
        return list(self.tags_by_digest.get(digest, ()))


@dataclass(frozen=True, slots=True)
class BlobInfo:
    digest: str
    size: int
    media_type: str | None = None


@dataclass(frozen=True, slots=True)
class UploadState:
    """A blob store's state of one upload session: opaque to all but the store that made it,
    persisted by the metadata store between requests."""

    key: str  # the store's name for the session's bytes
    size: int  # bytes received so far
    token: str  # renewed by every write: names exactly the bytes ``size`` counts
    extra: str = ""  # whatever else the store needs (JSON), e.g. part ETags


@dataclass(frozen=True, slots=True)
class UploadSession:
    id: str
    repository_id: int
    created_at: datetime
    state: UploadState
    # the last part's time (None: none since the session began); not part of equality
    updated_at: datetime | None = field(default=None, compare=False)

    @property
    def active_at(self) -> datetime:
        """When the session last changed: what upload expiry measures inactivity from."""
        return self.updated_at or self.created_at


@quick_init
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
    IMAGE_INACCESSIBLE = "ImageInaccessible"
    UPSTREAM_ACCESS_DENIED = "UpstreamAccessDenied"
    UPSTREAM_TOO_MANY_REQUESTS = "UpstreamTooManyRequests"
    UPSTREAM_UNAVAILABLE = "UpstreamUnavailable"


@dataclass(frozen=True, slots=True)
class ImageFailure:
    image_id: ImageId
    code: FailureCode
    reason: str


@quick_init
@dataclass(frozen=True, slots=True)
class ResolvedImage:
    """One pulled image: the image, the tag it is reported under, and what is served (the
    stored manifest, or a conversion with the digest of its own bytes)."""

    image: ImageRecord
    tag: str | None
    manifest: bytes
    media_type: str
    digest: str
