"""Image use cases: put, batch get, batch delete, list and describe.

Invariants kept here, once, for every API:
* manifest bytes are stored verbatim and the image digest is ``sha256(bytes)`` (``sha512``
  when a registry client pushes by a sha512 digest);
* everything a manifest references must be present (unless the lenient setting is on);
* tag immutability is enforced on every write;
* per-id outcomes of batch calls are values (:class:`ImageFailure`), never exceptions.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from openecr.domain import digest as digests
from openecr.domain import mediatypes as mt
from openecr.domain import names
from openecr.domain.conversion import served_digest
from openecr.domain.digest import Digest
from openecr.domain.manifest import Manifest, blob_references, parse_manifest
from openecr.domain.model import (
    FailureCode,
    ImageFailure,
    ImageId,
    ImageRecord,
    ImageSnapshot,
    ImageView,
    Repository,
    ResolvedImage,
)
from openecr.domain.records import quick_init
from openecr.domain.registries import account_of
from openecr.errors import (
    ImageAlreadyExists,
    ImageArchived,
    ImageDigestDoesNotMatch,
    ImageNotFound,
    ImageReferencedByIndex,
    ImageStorageClassUpdateNotSupported,
    ImageTagAlreadyExists,
    InvalidParameter,
    LayersNotFound,
    ReferencedImagesNotFound,
    RepositoryNotFound,
    UnableToGetUpstreamImage,
)
from openecr.ports.metadata import ImageReads, MetadataStore, Transaction
from openecr.service.common import Clock, Permit, require_repository, utcnow
from openecr.service.paging import decode_token, encode_token
from openecr.service.pulls import PullRecorder

log = logging.getLogger(__name__)

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
REASON_REFERENCED = "Requested image referenced by manifest list: [{parents}]"
REASON_ARCHIVED = (
    "Requested image is archived: restore it with UpdateImageStorageClass (targetStorageClass "
    "STANDARD) to pull it"
)
ARCHIVE = "ARCHIVE"
STANDARD = "STANDARD"
# ImageStatus filter -> the storage class it keeps (None: any). Restores are immediate here, so
# no image is ever ACTIVATING: that filter names a class no image has.
_STATUS_CLASSES: dict[str, str | None] = {
    "ANY": None,
    "ACTIVE": STANDARD,
    "ARCHIVED": ARCHIVE,
    "ACTIVATING": "ACTIVATING",
}


def image_status(image: ImageRecord) -> str:
    """ECR's ImageStatus of an image: ARCHIVED or ACTIVE."""
    return "ARCHIVED" if image.storage_class == ARCHIVE else "ACTIVE"


# Format negotiation when the accepted types miss the stored one (service/conversion.py):
# (image, accepted types, repository name, tag or None for a pull by digest) -> (bytes, type), or
# None when there is no accepted form.
Converter = Callable[[ImageRecord, Sequence[str], str, str | None], tuple[bytes, str] | None]


def _no_conversion(
    _image: ImageRecord, _accepted: Sequence[str], _repository: str, _tag: str | None
) -> tuple[bytes, str] | None:
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


@quick_init
@dataclass(frozen=True, slots=True)
class Lookup:
    """Where an id led: the image digest and the tags to report it under (None: untagged)."""

    digest: str
    tags: tuple[str | None, ...]


# the failures of ids that are malformed, as opposed to well-formed ids that name nothing
MALFORMED = frozenset(
    {
        FailureCode.MISSING_DIGEST_AND_TAG,
        FailureCode.INVALID_IMAGE_DIGEST,
        FailureCode.INVALID_IMAGE_TAG,
    }
)


def resolve_ids(
    tx: Transaction,
    repo: Repository,
    image_ids: Sequence[ImageId],
    *,
    every_tag: bool = False,
    pull_times: bool = True,
) -> tuple[ImageSnapshot, list[tuple[ImageId, Lookup | ImageFailure]]]:
    """Every id of a batch call (BatchGetImage, BatchDeleteImage, DescribeImages) resolved
    with ECR's rules, in request order, from one snapshot of the images they may name (read
    at once: a batch costs about what one id does). The snapshot also lists the tags of the
    images named by digest, and with ``every_tag`` of every image it holds; without
    ``pull_times`` its images' ``last_pulled_at`` may be None (see ``Transaction.snapshot``)."""
    checked = [(image_id, check_image_id(image_id)) for image_id in image_ids]
    wanted = [image_id for image_id, failure in checked if failure is None]
    snapshot = tx.snapshot(
        repo.id,
        [i.tag for i in wanted if i.tag is not None],
        [i.digest for i in wanted if i.tag is None and i.digest is not None],
        every_tag=every_tag,
        pull_times=pull_times,
    )
    # resolve_id's rules, on the snapshot's maps (a batch of 100 ids is 100 of these)
    targets, found, tags_by_digest = snapshot.tags, snapshot.images, snapshot.tags_by_digest
    resolved: list[tuple[ImageId, Lookup | ImageFailure]] = []
    for image_id, failure in checked:
        if failure is None:
            tag, digest = image_id.tag, image_id.digest
            if tag is not None:
                target = targets.get(tag)
                if target is None:
                    failure = _failure(image_id, FailureCode.IMAGE_NOT_FOUND, REASON_NOT_FOUND)
                elif digest is not None and digest != target:
                    failure = _failure(
                        image_id, FailureCode.IMAGE_TAG_DOES_NOT_MATCH_DIGEST, REASON_MISMATCH
                    )
                else:
                    resolved.append((image_id, Lookup(target, (tag,))))
                    continue
            elif digest is not None and digest in found:
                resolved.append((image_id, Lookup(digest, tags_by_digest.get(digest) or (None,))))
                continue
            else:
                failure = _failure(image_id, FailureCode.IMAGE_NOT_FOUND, REASON_NOT_FOUND)
        resolved.append((image_id, failure))
    return snapshot, resolved


def resolve_id(tx: ImageReads, repo: Repository, image_id: ImageId) -> Lookup | ImageFailure:
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
class _Refused:
    """A deletion refused because stored indexes (``parents``) list the image."""

    parents: tuple[str, ...]


@dataclass(slots=True)
class _Deletions:
    """What one BatchDeleteImage call has deleted so far, over the snapshot it resolved from."""

    snapshot: ImageSnapshot
    images: set[str] = field(default_factory=set)
    tags: set[str] = field(default_factory=set)

    def tags_of(self, repo_id: int, digest: str) -> set[str]:
        return set(self.snapshot.tags_of(repo_id, digest)) - self.tags


def _delete_one(
    tx: Transaction, repo: Repository, image_id: ImageId, found: Lookup, done: _Deletions
) -> list[ImageId] | _Refused:
    """Apply one resolved BatchDeleteImage id: the ids it deleted, or why it may not."""
    if found.digest in done.images:  # gone earlier in this call
        return [ImageId(found.digest, t) for t in found.tags]
    current = done.tags_of(repo.id, found.digest)
    if image_id.tag is not None and current - {image_id.tag}:
        # another tag keeps the image: only this tag goes
        if image_id.tag in current:
            tx.delete_tag(repo.id, image_id.tag)
            done.tags.add(image_id.tag)
        return [ImageId(found.digest, image_id.tag)]
    parents = tx.images_referencing(repo.id, found.digest)
    if parents:
        return _Refused(tuple(parents))
    tx.delete_image(repo.id, found.digest)
    done.images.add(found.digest)
    done.tags.update(current)
    return [ImageId(found.digest, t) for t in found.tags]


def _list_position(token: str) -> tuple[int, str | None]:
    """The (image seq, last tag) a ListImages token resumes after; raises InvalidParameter."""
    seq, slash, tag = decode_token(token, str, "images").partition("/")
    valid_seq = seq.isascii() and seq.isdigit() and len(seq) <= 18
    if not slash or not valid_seq or (tag and not names.is_tag(tag)):
        raise InvalidParameter.constraint("nextToken", "Invalid NextToken")
    return int(seq), tag or None


@dataclass(frozen=True, slots=True)
class PutResult:
    repository: Repository
    image: ImageRecord
    tag: str | None
    changed: bool = True  # False when the push stored nothing new (same bytes, same tag)


PushListener = Callable[[PutResult], None]
# Writes what must commit with a push (replication's queue), inside its write transaction.
PushWriter = Callable[[Transaction, PutResult], None]
# Adds what other services know of described images (their last scan) to DescribeImages' views,
# inside its read transaction.
DescribeAnnotator = Callable[[Transaction, Repository, list[ImageView]], list[ImageView]]


class ImageSource(Protocol):
    """Where a pull may find images a repository does not hold yet (a pull-through cache):
    ``covers`` says cheaply (no network) whether it may have work for a repository;
    ``ensure_image`` stores or refreshes what a pull names before the pull is answered, or
    raises UnableToGetUpstreamImage (its ``failure_code`` is BatchGetImage's per-image code);
    ``permit`` is the caller's right to import (raises AccessDenied, which the pull raises)."""

    def covers(self, registry_id: str, name: str | None = None) -> bool: ...

    def ensure_image(
        self, registry_id: str, name: str, image_id: ImageId, permit: Permit | None = None
    ) -> None: ...

    def check_push(self, tx: Transaction, repo: Repository) -> None:
        """Raise (PushToPullThroughCache) when pushes into ``repo`` are refused."""
        ...


@dataclass(frozen=True, slots=True)
class DeleteResult:
    repository: Repository
    deleted: list[ImageId]
    failures: list[ImageFailure]


@dataclass(frozen=True, slots=True)
class Referrer:
    """A manifest whose ``subject`` is another one, as the OCI referrers API describes it."""

    media_type: str
    digest: str
    size: int
    artifact_type: str | None
    annotations: Mapping[str, str] | None


def _referrer(record: ImageRecord) -> Referrer:
    """The spec's descriptor: ``artifactType`` from the manifest, else (image manifests only)
    the config's media type; the manifest's annotations."""
    try:
        doc = json.loads(record.manifest)
    except ValueError:  # stored manifests were parsed on push; keep the listing alive anyway
        doc = {}
    artifact = doc.get("artifactType")
    if not (isinstance(artifact, str) and artifact) and record.media_type in mt.IMAGE_MANIFESTS:
        config = doc.get("config")
        artifact = config.get("mediaType") if isinstance(config, dict) else None
    annotations = doc.get("annotations")
    return Referrer(
        record.media_type,
        record.digest,
        len(record.manifest),
        artifact if isinstance(artifact, str) and artifact else None,
        annotations if isinstance(annotations, dict) and annotations else None,
    )


@quick_init
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
        pulls: PullRecorder | None = None,
    ) -> None:
        self.meta = meta
        self.lenient = lenient_manifests
        self.clock = clock
        self.converter = converter
        self.pulls = pulls
        self.push_listeners: list[PushListener] = []
        self.push_writers: list[PushWriter] = []
        self.describe_annotators: list[DescribeAnnotator] = []
        self.source: ImageSource | None = None

    def set_source(self, source: ImageSource) -> None:
        """Consult ``source`` before answering a pull (see :class:`ImageSource`)."""
        self.source = source

    def may_fetch(self, registry_id: str, name: str | None = None) -> bool:
        """Whether a pull from ``name`` (None: from any repository of the registry) may reach
        an upstream: such a pull must run off the event loop."""
        return self.source is not None and self.source.covers(registry_id, name)

    def _ensure(
        self,
        registry_id: str,
        name: str,
        image_ids: Sequence[ImageId],
        permit: Permit | None = None,
    ) -> dict[int, UnableToGetUpstreamImage]:
        """Let the source fetch what a pull names; the errors of ids it could not get, by
        position (ids that are malformed are left to the pull)."""
        failed: dict[int, UnableToGetUpstreamImage] = {}
        source = self.source
        if source is None or not source.covers(registry_id, name):
            return failed
        for i, image_id in enumerate(image_ids):
            if check_image_id(image_id) is None:
                try:
                    source.ensure_image(registry_id, name, image_id, permit)
                except UnableToGetUpstreamImage as error:
                    failed[i] = error
        return failed

    def on_push(self, listener: PushListener) -> None:
        """Call ``listener`` after every committed push (PutImage, /v2 manifest PUT), outside
        the transaction and in the pushing thread: it must be quick (enqueue work, do not do
        it). A listener's exception is logged and does not fail the push."""
        self.push_listeners.append(listener)

    def on_push_write(self, writer: PushWriter) -> None:
        """Call ``writer`` inside every push's write transaction (PutImage, /v2 manifest PUT,
        and what stores through them: pull-through caching, image import), after the image
        and tag are written and before the commit: what it writes commits with the push or
        not at all (a crash cannot keep one without the other). It must only write through
        the transaction; an exception fails the push (nothing is stored)."""
        self.push_writers.append(writer)

    def on_describe(self, annotator: DescribeAnnotator) -> None:
        """Let ``annotator`` complete the views DescribeImages returns (it reads through the
        given transaction and returns the views, replaced where it adds something)."""
        self.describe_annotators.append(annotator)

    def _annotate(
        self, tx: Transaction, repo: Repository, views: list[ImageView]
    ) -> list[ImageView]:
        for annotator in self.describe_annotators:
            views = annotator(tx, repo, views)
        return views

    def _pushed(self, result: PutResult) -> PutResult:
        for listener in self.push_listeners:
            try:
                listener(result)
            except Exception:  # a listener must never fail a push that is already durable
                log.exception("push listener %r failed", listener)
        return result

    # --- writes -------------------------------------------------------------------------------

    def store_manifest(
        self,
        registry_id: str,
        name: str,
        raw: bytes,
        media_type: str | None,
        tag: str | None,
        expected_digest: str | None,
        *,
        idempotent: bool = False,
        algorithm: str = "sha256",
        require_media_type: bool = False,
        lenient: bool | None = None,
        cache: bool = False,
    ) -> PutResult:
        """Store a manifest verbatim and optionally tag it: ECR's PutImage and the /v2 manifest
        PUT. The image's digest is the ``algorithm`` hash of ``raw`` (a /v2 push by a sha512
        digest stores the image under it); ``expected_digest`` must equal it.

        Without ``idempotent`` (PutImage), storing what is already there is refused:
        ImageAlreadyExists for the same digest and tag, or an untagged re-put. With it (/v2),
        pushing bytes already stored, or a tag at the manifest it already names, succeeds
        (also in immutable repositories). Raises RepositoryNotFound, InvalidParameter (a bad
        tag or digest), ImageDigestDoesNotMatch, ManifestInvalid, LayersNotFound /
        ReferencedImagesNotFound (unless lenient), ImageTagAlreadyExists (moving an immutable
        tag). ``require_media_type`` (PutImage) refuses a schema 2 manifest whose media type
        is neither declared nor in the manifest (ManifestInvalid). ``lenient`` overrides the
        service's setting for this call (a pull-through cache stores manifests before their
        layers). The source refuses pushes into its repositories (PushToPullThroughCache),
        except the ``cache``'s own writes."""
        if tag is not None and not names.is_tag(tag):
            raise InvalidParameter.constraint(
                "imageTag", f"must satisfy regular expression '{names.TAG_PATTERN}'"
            )
        if expected_digest is not None and not digests.is_well_formed(expected_digest):
            raise InvalidParameter.constraint(
                "imageDigest", f"must satisfy regular expression '{digests.ECR_DIGEST_PATTERN}'"
            )
        manifest = parse_manifest(raw, media_type, require_media_type=require_media_type)
        if algorithm != "sha256":
            manifest = replace(manifest, digest=Digest.of(raw, algorithm))
        if expected_digest is not None and expected_digest != manifest.digest:
            raise ImageDigestDoesNotMatch(
                f"Provided digest '{expected_digest}' does not match the digest of the image "
                f"manifest '{manifest.digest}'"
            )
        with self.meta.write() as tx:
            repo = require_repository(tx, registry_id, name)
            if self.source is not None and not cache:
                self.source.check_push(tx, repo)
            existing = tx.get_image(repo.id, manifest.digest)
            current = tx.get_tag(repo.id, tag) if tag is not None else None
            if existing is not None and existing.storage_class == ARCHIVE:
                # pushing an archived image again restores it (as on ECR)
                tx.set_storage_class(repo.id, existing.digest, STANDARD, self.clock())
                existing = tx.get_image(repo.id, existing.digest)
                idempotent = True
            already = current == manifest.digest if tag is not None else existing is not None
            if already and not idempotent:
                raise ImageAlreadyExists(
                    f"Image with digest '{manifest.digest}' and tag '{tag or 'null'}' already "
                    f"exists in the repository with name '{name}' in registry with id "
                    f"'{account_of(registry_id)}'"
                )
            moving = tag is not None and current not in (None, manifest.digest)
            if moving and tag is not None and repo.tag_is_immutable(tag):
                raise ImageTagAlreadyExists(tag, name)
            record = existing or self._insert(
                tx, repo, manifest, self.lenient if lenient is None else lenient
            )
            retagged = tag is not None and current != manifest.digest
            if retagged and tag is not None:
                tx.set_tag(repo.id, tag, manifest.digest, self.clock())
            result = PutResult(repo, record, tag, changed=existing is None or retagged)
            for writer in self.push_writers:
                writer(tx, result)
        return self._pushed(result)

    def _insert(
        self, tx: Transaction, repo: Repository, manifest: Manifest, lenient: bool
    ) -> ImageRecord:
        size = manifest.size
        if manifest.is_index:
            children = [c.digest for c in manifest.children]
            stored = {d: tx.get_image(repo.id, d) for d in dict.fromkeys(children)}
            missing = [d for d, img in stored.items() if img is None]
            if missing and not lenient:
                raise ReferencedImagesNotFound(
                    f"The following referenced images were not found in the repository with "
                    f"name '{repo.name}' in the registry with id '{account_of(repo.registry_id)}': "
                    f"[{', '.join(missing)}]"
                )
            size = max((img.size for img in stored.values() if img is not None), default=0)
        elif not lenient:
            missing = [
                b.digest for b in manifest.blobs if tx.get_linked_blob(repo.id, b.digest) is None
            ]
            if missing:
                raise LayersNotFound(
                    f"Layers with digests '[{', '.join(dict.fromkeys(missing))}]' required for "
                    f"pushing image into repository with name '{repo.name}' in the registry "
                    f"with id '{account_of(repo.registry_id)}' do not exist"
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
        tx.add_image_blobs(repo.id, manifest.digest, blob_references(manifest))
        if manifest.is_index:
            tx.add_references(repo.id, manifest.digest, [c.digest for c in manifest.children])
        return record

    def batch_delete_image(
        self, registry_id: str, name: str, image_ids: Sequence[ImageId]
    ) -> DeleteResult:
        """Delete by tag (the image goes when its last tag goes) or by digest (with every tag).

        Every id is resolved against the repository as it was before the call, so ids naming
        the same image twice (``[{digest}, {one of its tags}]``) succeed once, without a
        failure. Identical outcomes are reported once, in request order. An image listed by a
        stored index is refused (``ImageReferencedByManifestList``) unless that index goes in
        the same call: ids refused for a reference are retried after the others, so a list and
        its children can be deleted together in any order."""
        outcomes: list[list[ImageId] | ImageFailure | _Refused] = []
        with self.meta.write() as tx:
            repo = require_repository(tx, registry_id, name)
            snapshot, resolved = resolve_ids(tx, repo, image_ids, every_tag=True)
            done = _Deletions(snapshot)
            for image_id, found in resolved:
                if isinstance(found, ImageFailure):
                    outcomes.append(found)
                else:
                    outcomes.append(_delete_one(tx, repo, image_id, found, done))
            waiting = [i for i, outcome in enumerate(outcomes) if isinstance(outcome, _Refused)]
            while waiting:  # a list deleted in this call frees its children: retry them
                for i in waiting:
                    image_id, found = resolved[i]
                    assert isinstance(found, Lookup)
                    outcomes[i] = _delete_one(tx, repo, image_id, found, done)
                still = [i for i in waiting if isinstance(outcomes[i], _Refused)]
                if len(still) == len(waiting):
                    break
                waiting = still
        deleted: list[ImageId] = []
        failures: list[ImageFailure] = []
        for (image_id, _), outcome in zip(resolved, outcomes, strict=True):
            if isinstance(outcome, _Refused):
                reason = REASON_REFERENCED.format(parents=", ".join(outcome.parents))
                outcome = _failure(image_id, FailureCode.IMAGE_REFERENCED_BY_MANIFEST_LIST, reason)
            if isinstance(outcome, ImageFailure):
                if outcome not in failures:
                    failures.append(outcome)
            else:
                deleted.extend(i for i in outcome if i not in deleted)
        return DeleteResult(repo, deleted, failures)

    # --- reads --------------------------------------------------------------------------------

    def batch_get_image(
        self,
        registry_id: str,
        name: str,
        image_ids: Sequence[ImageId],
        accepted: Sequence[str] | None,
        principal: str | None = None,
        permit: Permit | None = None,
    ) -> GetResult:
        """ECR's BatchGetImage: results and failures in request order, identical ones once.
        The pull is recorded as ``principal``'s (pull-time exclusions name principals).

        By tag: one result under that tag. By digest: one result per tag of the image (one
        without a tag when untagged). The stored manifest is served when ``accepted`` is None
        or lists its type; by digest it is served regardless; by tag the converter may offer
        another form, else the id fails with ImageNotFound."""
        images: list[ResolvedImage] = []
        failures: list[ImageFailure] = []
        pulled: dict[int, str] = {}  # image key (seq) -> digest
        seen: set[tuple[str, str | None]] = set()
        upstream = self._ensure(registry_id, name, image_ids, permit)
        with self.meta.read() as tx:
            if upstream and tx.get_repository(registry_id, name) is None:
                raise next(iter(upstream.values()))  # nothing cached and no upstream answer
            repo = require_repository(tx, registry_id, name)
            # a pull serves manifests: the images' pull times are not read
            snapshot, resolved = resolve_ids(tx, repo, image_ids, pull_times=False)
        found_images = snapshot.images
        for i, (image_id, found) in enumerate(resolved):
            if upstream and i in upstream and isinstance(found, ImageFailure):
                error = upstream[i]
                found = _failure(image_id, FailureCode(error.failure_code), error.message)
            if isinstance(found, ImageFailure):
                if found not in failures:
                    failures.append(found)
                continue
            record = found_images.get(found.digest)
            if record is None:  # a tag left dangling by a concurrent delete
                found = _failure(image_id, FailureCode.IMAGE_NOT_FOUND, REASON_NOT_FOUND)
                if found not in failures:
                    failures.append(found)
                continue
            if record.storage_class == ARCHIVE:
                found = _failure(image_id, FailureCode.IMAGE_INACCESSIBLE, REASON_ARCHIVED)
                if found not in failures:
                    failures.append(found)
                continue
            pulled[record.seq] = record.digest
            if accepted is None or record.media_type in accepted:  # the stored form (_serve)
                served: tuple[bytes, str, str] | None = (
                    record.manifest,
                    record.media_type,
                    record.digest,
                )
            else:  # only a pull by tag alone may convert; with a digest the stored form is served
                by_tag = image_id.tag is not None and image_id.digest is None
                served = self._serve(record, accepted, repo.name, image_id.tag, by_tag=by_tag)
            if served is None:
                found = _failure(image_id, FailureCode.IMAGE_NOT_FOUND, REASON_NOT_FOUND)
                if found not in failures:
                    failures.append(found)
                continue
            for tag in found.tags:
                key = (record.digest, tag)
                if key not in seen:
                    seen.add(key)
                    images.append(ResolvedImage(record, tag, *served))
        if pulled and self.pulls is not None:
            self.pulls.note(repo.id, pulled, registry_id, principal)
        return GetResult(repo, images, failures)

    def _serve(
        self,
        image: ImageRecord,
        accepted: Sequence[str] | None,
        repository: str,
        tag: str | None,
        *,
        by_tag: bool,
    ) -> tuple[bytes, str, str] | None:
        """What is served: the stored form, or a converted one with the digest of its bytes
        (manifest, media type, digest); None when no accepted form exists."""
        if accepted is None or image.media_type in accepted:
            return image.manifest, image.media_type, image.digest
        # By digest nothing is translated (the converter may only sign a schema 1 manifest, which
        # keeps its digest) and the stored manifest is served when no accepted form exists.
        converted = self.converter(image, accepted, repository, tag if by_tag else None)
        if converted is None:
            return None if by_tag else (image.manifest, image.media_type, image.digest)
        raw, media_type = converted
        digest = image.digest if raw == image.manifest else served_digest(raw, media_type)
        return raw, media_type, digest

    def list_images(
        self,
        registry_id: str,
        name: str,
        tag_status: str,
        token: str | None,
        max_results: int | None,
        status: str = "ANY",
    ) -> tuple[list[ImageId], str | None]:
        """Image ids: images in push order, each as one id per tag (in tag order) or as a bare
        digest when untagged. A page holds at most ``max_results`` ids (default 100), so one
        image's tags may span pages; the token names the last id returned (image and tag)."""
        limit = max_results or 100
        after_seq, after_tag = _list_position(token) if token else (None, None)
        # resuming inside an image: read from that image itself (ids are integers)
        position = after_seq - 1 if after_seq is not None and after_tag is not None else after_seq
        found: list[tuple[int, ImageId]] = []
        with self.meta.read() as tx:
            repo = require_repository(tx, registry_id, name)
            while len(found) <= limit:
                views = tx.list_images(
                    repo.id, tag_status, position, limit + 1, _STATUS_CLASSES[status]
                )
                for view in views:
                    seq, digest = view.image.seq, view.image.digest
                    entries = [ImageId(digest, t) for t in sorted(view.tags)] or [
                        ImageId(digest, None)
                    ]
                    if seq == after_seq:
                        entries = [e for e in entries if after_tag and (e.tag or "") > after_tag]
                    found.extend((seq, e) for e in entries)
                if len(views) <= limit:
                    break
                position = views[-1].image.seq
        page = found[:limit]
        next_token = None
        if len(found) > limit:
            seq, last = page[-1]
            next_token = encode_token(f"{seq}/{last.tag or ''}", "images")
        return [image_id for _, image_id in page], next_token

    def describe_images(
        self,
        registry_id: str,
        name: str,
        image_ids: Sequence[ImageId] | None,
        tag_status: str,
        token: str | None,
        max_results: int | None,
        status: str = "ANY",
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
                snapshot, resolved = resolve_ids(tx, repo, image_ids, every_tag=True)
            for image_id, found in resolved:
                if isinstance(found, ImageFailure) and found.code in MALFORMED:
                    raise InvalidParameter(found.reason)
                record = (
                    None
                    if isinstance(found, ImageFailure)
                    else snapshot.get_image(repo.id, found.digest)
                )
                if record is None:
                    raise ImageNotFound(
                        f"The image with imageId {{imageDigest:'{image_id.digest}', "
                        f"imageTag:'{image_id.tag}'}} does not exist within the repository "
                        f"with name '{name}' in the registry with id '{account_of(registry_id)}'"
                    )
                view = ImageView(record, tuple(snapshot.tags_of(repo.id, record.digest)))
                if all(v.image.digest != record.digest for v in views):
                    views.append(view)
            if self.describe_annotators:
                with self.meta.read() as tx:
                    views = self._annotate(tx, repo, views)
            return repo, views, None
        views, next_token = self._page(registry_id, name, tag_status, token, max_results, status)
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
        status: str,
    ) -> tuple[list[ImageView], str | None]:
        limit = max_results or 100
        after = decode_token(token, int, "details") if token else None
        with self.meta.read() as tx:
            repo = require_repository(tx, registry_id, name)
            views = tx.list_images(repo.id, tag_status, after, limit + 1, _STATUS_CLASSES[status])
            more = len(views) > limit
            views = views[:limit]
            if self.describe_annotators:
                views = self._annotate(tx, repo, views)
        return views, encode_token(views[-1].image.seq, "details") if more else None

    def update_storage_class(
        self, registry_id: str, name: str, image_id: ImageId, target: str
    ) -> tuple[Repository, ImageRecord]:
        """ECR's UpdateImageStorageClass: archive an image (ARCHIVE) or restore it (STANDARD),
        at once; return it as it is now. Raises RepositoryNotFound, InvalidParameter (a
        malformed id), ImageNotFound, ImageStorageClassUpdateNotSupported (already there)."""
        with self.meta.write() as tx:
            repo = require_repository(tx, registry_id, name)
            _, [(_, found)] = resolve_ids(tx, repo, [image_id])
            if isinstance(found, ImageFailure) and found.code in MALFORMED:
                raise InvalidParameter(found.reason)
            record = (
                None if isinstance(found, ImageFailure) else tx.get_image(repo.id, found.digest)
            )
            if record is None:
                raise ImageNotFound(
                    f"The image with imageId {{imageDigest:'{image_id.digest}', "
                    f"imageTag:'{image_id.tag}'}} does not exist within the repository "
                    f"with name '{name}' in the registry with id '{account_of(registry_id)}'"
                )
            if record.storage_class == target:
                raise ImageStorageClassUpdateNotSupported(
                    f"The image with digest '{record.digest}' is already in the {target} "
                    "storage class"
                )
            tx.set_storage_class(repo.id, record.digest, target, self.clock())
            updated = tx.get_image(repo.id, record.digest)
        assert updated is not None
        return repo, updated

    # --- the registry (OCI Distribution) side ---------------------------------------------------

    def lookup(
        self,
        registry_id: str,
        name: str,
        reference: ImageId,
        *,
        pull: bool = False,
        principal: str | None = None,
        permit: Permit | None = None,
    ) -> ImageRecord:
        """The image a tag or digest names (a /v2 pull), in one read (the store's joined
        lookup): it is the hottest path of a pull. With ``pull`` the pull's time is recorded
        as ``principal``'s (pull-time exclusions name principals).
        Raises RepositoryNotFound, ImageNotFound, ImageArchived, and what the source raises
        (see :meth:`may_fetch`: then this must not run on the event loop)."""
        if self.source is not None:
            failed = self._ensure(registry_id, name, [reference], permit)
            if failed:
                raise failed[0]
        with self.meta.read() as tx:
            repo_id, record = tx.lookup_image(registry_id, name, reference.tag, reference.digest)
        if repo_id is None:
            raise RepositoryNotFound(name, account_of(registry_id))
        if record is None:
            raise ImageNotFound(REASON_NOT_FOUND)
        if record.storage_class == ARCHIVE:
            raise ImageArchived(REASON_ARCHIVED)
        if pull and self.pulls is not None:
            self.pulls.note(
                record.repository_id, {record.seq: record.digest}, registry_id, principal
            )
        return record

    @staticmethod
    def needs_negotiation(record: ImageRecord, accepted: Sequence[str] | None) -> bool:
        """Whether serving ``record`` to a client accepting ``accepted`` may convert (read
        blobs, sign): only then does :meth:`serve` do more than return the stored bytes."""
        return accepted is not None and record.media_type not in accepted

    def serve(
        self,
        record: ImageRecord,
        accepted: Sequence[str] | None,
        repository: str,
        tag: str | None,
    ) -> ResolvedImage:
        """What a pull of ``record`` by ``tag`` (None: by digest) from ``repository`` serves to
        a client accepting ``accepted`` (None: anything), as BatchGetImage serves it, with the
        digest of the bytes served. Raises ImageNotFound when no accepted form exists."""
        served = self._serve(record, accepted, repository, tag, by_tag=tag is not None)
        if served is None:
            raise ImageNotFound(REASON_NOT_FOUND)
        return ResolvedImage(record, tag, *served)

    def untag(self, registry_id: str, name: str, tag: str) -> str:
        """Remove a tag (the image stays, untagged if it was its last); return the digest it
        named. Raises RepositoryNotFound, ImageNotFound."""
        with self.meta.write() as tx:
            repo = require_repository(tx, registry_id, name)
            digest = tx.get_tag(repo.id, tag)
            if digest is None:
                raise ImageNotFound(REASON_NOT_FOUND)
            tx.delete_tag(repo.id, tag)
            return digest

    def delete_manifest(self, registry_id: str, name: str, digest: str) -> None:
        """Delete an image with all its tags. Raises RepositoryNotFound, ImageNotFound,
        ImageReferencedByIndex (a stored index lists it)."""
        with self.meta.write() as tx:
            repo = require_repository(tx, registry_id, name)
            if tx.get_image(repo.id, digest) is None:
                raise ImageNotFound(REASON_NOT_FOUND)
            parents = tx.images_referencing(repo.id, digest)
            if parents:
                raise ImageReferencedByIndex(REASON_REFERENCED.format(parents=", ".join(parents)))
            tx.delete_image(repo.id, digest)

    def list_tags(
        self, registry_id: str, name: str, after: str | None, limit: int | None
    ) -> tuple[list[str], bool]:
        """Tags in byte order after ``after``, at most ``limit`` (None: all), and whether more
        follow. Raises RepositoryNotFound."""
        with self.meta.read() as tx:
            repo = require_repository(tx, registry_id, name)
            found = tx.list_tags(repo.id, after, None if limit is None else limit + 1)
        if limit is not None and len(found) > limit:
            return found[:limit], True
        return found, False

    def referrers(
        self, registry_id: str, name: str, subject: str, artifact_types: Sequence[str] | None
    ) -> list[Referrer]:
        """Manifests of the repository whose subject is ``subject``, in push order, optionally
        only those of the given artifact types. Raises RepositoryNotFound."""
        with self.meta.read() as tx:
            repo = require_repository(tx, registry_id, name)
            records = tx.images_with_subject(repo.id, subject)
        found = [_referrer(r) for r in records]
        if artifact_types:
            found = [r for r in found if r.artifact_type in artifact_types]
        return found
