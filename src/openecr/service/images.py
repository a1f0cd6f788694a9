"""Image use cases: put, batch get, batch delete, list and describe.

Invariants kept here, once, for every API:
* manifest bytes are stored verbatim and the image digest is ``sha256(bytes)``;
* everything a manifest references must be present (unless the lenient setting is on);
* tag immutability is enforced on every write;
* per-id outcomes of batch calls are values (:class:`ImageFailure`), never exceptions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from openecr.domain import digest as digests
from openecr.domain import names
from openecr.domain.manifest import Manifest, parse_manifest
from openecr.domain.model import (
    FailureCode,
    ImageFailure,
    ImageId,
    ImageRecord,
    ImageView,
    Repository,
    ResolvedImage,
)
from openecr.errors import (
    ImageAlreadyExists,
    ImageDigestDoesNotMatch,
    ImageNotFound,
    ImageTagAlreadyExists,
    InvalidParameter,
    LayersNotFound,
    ReferencedImagesNotFound,
)
from openecr.ports.metadata import MetadataStore, Transaction
from openecr.service.paging import decode_token, encode_token
from openecr.service.repositories import Clock, require_repository, utcnow

REASON_NOT_FOUND = "Requested image not found"
REASON_MISSING = "Invalid request parameters: both tag and digest cannot be null"
REASON_BAD_DIGEST = (
    "Invalid request parameters: image digest should satisfy the regex "
    f"'{digests.ECR_DIGEST_PATTERN}'"
)
REASON_BAD_TAG = (
    f"Invalid request parameters: image tag should satisfy the regex '{names.TAG_PATTERN}'"
)
REASON_MISMATCH = "Invalid request parameters: given tag does not map to the given digest"
REASON_REFERENCED = "Requested image referenced by manifest list: {parents}"

# A hook for format conversion (a later concern): (image, accepted types) -> (bytes, type) or None.
Converter = Callable[[ImageRecord, Sequence[str]], tuple[bytes, str] | None]


def _no_conversion(_image: ImageRecord, _accepted: Sequence[str]) -> tuple[bytes, str] | None:
    return None


def _failure(image_id: ImageId, code: FailureCode, reason: str) -> ImageFailure:
    return ImageFailure(image_id, code, reason)


def check_image_id(image_id: ImageId) -> ImageFailure | None:
    """The failure ECR reports for a malformed id, checked in ECR's order, or None."""
    if image_id.digest is None and image_id.tag is None:
        return _failure(image_id, FailureCode.MISSING_DIGEST_AND_TAG, REASON_MISSING)
    if image_id.digest is not None and not digests.is_well_formed(image_id.digest):
        return _failure(image_id, FailureCode.INVALID_IMAGE_DIGEST, REASON_BAD_DIGEST)
    if image_id.tag is not None and not names.is_tag(image_id.tag):
        return _failure(image_id, FailureCode.INVALID_IMAGE_TAG, REASON_BAD_TAG)
    return None


@dataclass(frozen=True, slots=True)
class Lookup:
    """Where an id led: the image digest and the tags to report it under (None: untagged)."""

    digest: str
    tags: tuple[str | None, ...]


def resolve_id(tx: Transaction, repo: Repository, image_id: ImageId) -> Lookup | ImageFailure:
    """Resolve one well-formed id with ECR's rules (tag first; a given digest must match)."""
    if image_id.tag is not None:
        target = tx.get_tag(repo.id, image_id.tag)
        if target is None:
            return _failure(image_id, FailureCode.IMAGE_NOT_FOUND, REASON_NOT_FOUND)
        if image_id.digest is not None and image_id.digest != target:
            return _failure(image_id, FailureCode.IMAGE_TAG_DOES_NOT_MATCH_DIGEST, REASON_MISMATCH)
        return Lookup(target, (image_id.tag,))
    assert image_id.digest is not None
    if tx.get_image(repo.id, image_id.digest) is None:
        return _failure(image_id, FailureCode.IMAGE_NOT_FOUND, REASON_NOT_FOUND)
    found: tuple[str | None, ...] = tuple(tx.tags_of(repo.id, image_id.digest))
    return Lookup(image_id.digest, found or (None,))


@dataclass(frozen=True, slots=True)
class PutResult:
    repository: Repository
    image: ImageRecord
    tag: str | None


@dataclass(frozen=True, slots=True)
class DeleteResult:
    repository: Repository
    deleted: list[ImageId]
    failures: list[ImageFailure]


@dataclass(frozen=True, slots=True)
class GetResult:
    repository: Repository
    images: list[ResolvedImage]
    failures: list[ImageFailure]


class ImageService:
    def __init__(
        self,
        meta: MetadataStore,
        *,
        lenient_manifests: bool = False,
        clock: Clock = utcnow,
        converter: Converter = _no_conversion,
    ) -> None:
        self.meta = meta
        self.lenient = lenient_manifests
        self.clock = clock
        self.converter = converter

    # --- writes -------------------------------------------------------------------------------

    def put_image(
        self,
        registry_id: str,
        name: str,
        raw: bytes,
        media_type: str | None,
        tag: str | None,
        expected_digest: str | None,
    ) -> PutResult:
        """Store a manifest verbatim and optionally tag it.

        Raises RepositoryNotFound, ImageDigestDoesNotMatch, ManifestInvalid, InvalidParameter
        (bad tag), LayersNotFound / ReferencedImagesNotFound (unless lenient), ImageAlreadyExists
        (same digest and tag, or an untagged re-put), ImageTagAlreadyExists (immutable tag)."""
        if tag is not None and not names.is_tag(tag):
            raise InvalidParameter.constraint(
                "imageTag", f"must satisfy regular expression '{names.TAG_PATTERN}'"
            )
        manifest = parse_manifest(raw, media_type)
        if expected_digest is not None and expected_digest != manifest.digest:
            raise ImageDigestDoesNotMatch(
                f"Provided digest '{expected_digest}' does not match the digest of the image "
                f"manifest '{manifest.digest}'"
            )
        with self.meta.write() as tx:
            repo = require_repository(tx, registry_id, name)
            existing = tx.get_image(repo.id, manifest.digest)
            if tag is not None:
                current = tx.get_tag(repo.id, tag)
                if current == manifest.digest:
                    raise ImageAlreadyExists(
                        f"Image with digest '{manifest.digest}' and tag '{tag}' already exists "
                        f"in the repository with name '{name}' in registry with id '{registry_id}'"
                    )
                if current is not None and repo.tag_is_immutable(tag):
                    raise ImageTagAlreadyExists(tag, name)
            elif existing is not None:
                raise ImageAlreadyExists(
                    f"Image with digest '{manifest.digest}' and tag 'null' already exists "
                    f"in the repository with name '{name}' in registry with id '{registry_id}'"
                )
            if existing is None:
                existing = self._insert(tx, repo, manifest)
            if tag is not None:
                tx.set_tag(repo.id, tag, manifest.digest, self.clock())
            return PutResult(repo, existing, tag)

    def _insert(self, tx: Transaction, repo: Repository, manifest: Manifest) -> ImageRecord:
        size = manifest.size
        if manifest.is_index:
            children = [c.digest for c in manifest.children]
            stored = {d: tx.get_image(repo.id, d) for d in dict.fromkeys(children)}
            missing = [d for d, img in stored.items() if img is None]
            if missing and not self.lenient:
                raise ReferencedImagesNotFound(
                    f"The following referenced images were not found in the repository with "
                    f"name '{repo.name}' in the registry with id '{repo.registry_id}': "
                    f"[{', '.join(missing)}]"
                )
            size = max((img.size for img in stored.values() if img is not None), default=0)
        elif not self.lenient:
            missing = [
                b.digest for b in manifest.blobs if tx.get_linked_blob(repo.id, b.digest) is None
            ]
            if missing:
                raise LayersNotFound(
                    f"Layers with digests '[{', '.join(dict.fromkeys(missing))}]' required for "
                    f"pushing image into repository with name '{repo.name}' in the registry "
                    f"with id '{repo.registry_id}' do not exist"
                )
        record = ImageRecord(
            repository_id=repo.id,
            digest=manifest.digest,
            manifest=manifest.raw,
            media_type=manifest.media_type,
            artifact_media_type=manifest.config.media_type if manifest.config else None,
            size=size,
            pushed_at=self.clock(),
            subject=manifest.subject,
        )
        tx.insert_image(record)
        if manifest.is_index:
            tx.add_references(repo.id, manifest.digest, [c.digest for c in manifest.children])
        return record

    def batch_delete_image(
        self, registry_id: str, name: str, image_ids: Sequence[ImageId]
    ) -> DeleteResult:
        """Delete by tag (the image goes when its last tag goes) or by digest (with every tag).
        Identical outcomes are reported once; an image listed by a stored index is refused."""
        deleted: list[ImageId] = []
        failures: list[ImageFailure] = []
        with self.meta.write() as tx:
            repo = require_repository(tx, registry_id, name)
            for image_id in image_ids:
                failure = check_image_id(image_id)
                found = failure or resolve_id(tx, repo, image_id)
                if isinstance(found, ImageFailure):
                    if found not in failures:
                        failures.append(found)
                    continue
                remaining = set(tx.tags_of(repo.id, found.digest)) - set(found.tags)
                if image_id.tag is not None and remaining:
                    tx.delete_tag(repo.id, image_id.tag)
                    outcome = [ImageId(found.digest, image_id.tag)]
                else:
                    parents = tx.images_referencing(repo.id, found.digest)
                    if parents:
                        failures.append(
                            _failure(
                                image_id,
                                FailureCode.IMAGE_REFERENCED_BY_MANIFEST_LIST,
                                REASON_REFERENCED.format(parents=", ".join(parents)),
                            )
                        )
                        continue
                    tx.delete_image(repo.id, found.digest)
                    outcome = [ImageId(found.digest, t) for t in found.tags]
                deleted.extend(i for i in outcome if i not in deleted)
        return DeleteResult(repo, deleted, failures)

    # --- reads --------------------------------------------------------------------------------

    def batch_get_image(
        self,
        registry_id: str,
        name: str,
        image_ids: Sequence[ImageId],
        accepted: Sequence[str] | None,
    ) -> GetResult:
        """ECR's BatchGetImage: results and failures in request order, identical ones once.

        By tag: one result under that tag. By digest: one result per tag of the image (one
        without a tag when untagged). The stored manifest is served when ``accepted`` is None
        or lists its type; by digest it is served regardless; by tag the converter may offer
        another form, else the id fails with ImageNotFound."""
        images: list[ResolvedImage] = []
        failures: list[ImageFailure] = []
        seen: set[tuple[str, str | None]] = set()
        with self.meta.read() as tx:
            repo = require_repository(tx, registry_id, name)
            records: dict[str, ImageRecord] = {}
            for image_id in image_ids:
                failure = check_image_id(image_id)
                found = failure or resolve_id(tx, repo, image_id)
                if isinstance(found, ImageFailure):
                    if found not in failures:
                        failures.append(found)
                    continue
                record = records.get(found.digest) or tx.get_image(repo.id, found.digest)
                if record is None:  # a tag left dangling by a concurrent delete
                    failures.append(
                        _failure(image_id, FailureCode.IMAGE_NOT_FOUND, REASON_NOT_FOUND)
                    )
                    continue
                records[found.digest] = record
                served = self._serve(record, accepted, by_tag=image_id.tag is not None)
                if served is None:
                    failures.append(
                        _failure(image_id, FailureCode.IMAGE_NOT_FOUND, REASON_NOT_FOUND)
                    )
                    continue
                for tag in found.tags:
                    if (record.digest, tag) not in seen:
                        seen.add((record.digest, tag))
                        images.append(ResolvedImage(record, tag, served[0], served[1]))
        return GetResult(repo, images, failures)

    def _serve(
        self, image: ImageRecord, accepted: Sequence[str] | None, *, by_tag: bool
    ) -> tuple[bytes, str] | None:
        if accepted is None or image.media_type in accepted or not by_tag:
            return image.manifest, image.media_type
        return self.converter(image, accepted)

    def get_manifest(self, registry_id: str, name: str, reference: ImageId) -> ImageRecord:
        """One image by tag or digest; raises RepositoryNotFound / ImageNotFound."""
        with self.meta.read() as tx:
            repo = require_repository(tx, registry_id, name)
            found = check_image_id(reference) or resolve_id(tx, repo, reference)
            record = (
                None if isinstance(found, ImageFailure) else tx.get_image(repo.id, found.digest)
            )
        if record is None:
            raise ImageNotFound(REASON_NOT_FOUND)
        return record

    def list_images(
        self,
        registry_id: str,
        name: str,
        tag_status: str,
        token: str | None,
        max_results: int | None,
    ) -> tuple[list[ImageId], str | None]:
        """Image ids in push order: one per tag, or a bare digest for an untagged image. A page
        holds at most ``max_results`` images (default 100)."""
        views, next_token = self._page(registry_id, name, tag_status, token, max_results)
        ids: list[ImageId] = []
        for view in views:
            if view.tags:
                ids.extend(ImageId(view.image.digest, t) for t in view.tags)
            else:
                ids.append(ImageId(view.image.digest, None))
        return ids, next_token

    def describe_images(
        self,
        registry_id: str,
        name: str,
        image_ids: Sequence[ImageId] | None,
        tag_status: str,
        token: str | None,
        max_results: int | None,
    ) -> tuple[Repository, list[ImageView], str | None]:
        """Named images (the first unknown one raises ImageNotFound), or a page of all."""
        if image_ids:
            if token is not None or max_results is not None:
                raise InvalidParameter(
                    "Invalid parameter: 'maxResults' and 'nextToken' cannot be used with 'imageIds'"
                )
            views: list[ImageView] = []
            with self.meta.read() as tx:
                repo = require_repository(tx, registry_id, name)
                for image_id in image_ids:
                    failure = check_image_id(image_id)
                    if failure and failure.code is not FailureCode.IMAGE_NOT_FOUND:
                        raise InvalidParameter(failure.reason)
                    found = resolve_id(tx, repo, image_id)
                    record = (
                        None
                        if isinstance(found, ImageFailure)
                        else tx.get_image(repo.id, found.digest)
                    )
                    if record is None:
                        raise ImageNotFound(
                            f"The image with imageId {{imageDigest:'{image_id.digest}', "
                            f"imageTag:'{image_id.tag}'}} does not exist within the repository "
                            f"with name '{name}' in the registry with id '{registry_id}'"
                        )
                    view = ImageView(record, tuple(tx.tags_of(repo.id, record.digest)))
                    if all(v.image.digest != record.digest for v in views):
                        views.append(view)
            return repo, views, None
        views, next_token = self._page(registry_id, name, tag_status, token, max_results)
        return self._repo(registry_id, name), views, next_token

    def _repo(self, registry_id: str, name: str) -> Repository:
        with self.meta.read() as tx:
            return require_repository(tx, registry_id, name)

    def _page(
        self,
        registry_id: str,
        name: str,
        tag_status: str,
        token: str | None,
        max_results: int | None,
    ) -> tuple[list[ImageView], str | None]:
        limit = max_results or 100
        after = decode_token(token, int) if token else None
        with self.meta.read() as tx:
            repo = require_repository(tx, registry_id, name)
            views = tx.list_images(repo.id, tag_status, after, limit + 1)
        more = len(views) > limit
        views = views[:limit]
        return views, encode_token(views[-1].image.seq) if more else None
