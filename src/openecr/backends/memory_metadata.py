"""MetadataStore in process memory, for tests and throwaway registries.

Copy-on-write: a write transaction works on a copy of the committed state (the top-level maps
at once, a repository's rows when it first changes them) and publishes it on normal exit, so
an exception rolls everything back and readers, who never wait, see the last committed state.
Writers are serialised by a lock. Behaves as the SQL store does on SQLite: timestamps go
through float seconds (returned in UTC), names and tags sort by code point (byte order), and
a repository's rows outlive it only where SQL's do (blobs).
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from openecr.domain.model import (
    BlobInfo,
    ExclusionFilter,
    ImageRecord,
    ImageSnapshot,
    ImageView,
    Repository,
    RepositoryStats,
    TagMutability,
    UploadSession,
    UploadState,
)
from openecr.domain.storage import StorageTotals
from openecr.ports.metadata import MetadataStore


class ConstraintError(ValueError):
    """A write broke a uniqueness rule (as SQL's IntegrityError); its transaction rolls back."""


class ReadOnlyError(RuntimeError):
    """A ``read()`` transaction was asked to write."""


def _instant(value: datetime) -> datetime:
    """``value`` as SQL returns it: through float seconds since the epoch, in UTC."""
    return datetime.fromtimestamp(value.timestamp(), UTC)


@dataclass(slots=True)
class _Rows:
    """The rows of one repository id (they need no repository, as in SQL)."""

    images: dict[str, ImageRecord]  # by digest, in push order (seq increases)
    tags: dict[str, tuple[str, float]]  # tag: (digest, set_at seconds)
    refs: set[tuple[str, str]]  # (parent, child)
    links: set[str]  # linked blob digests
    resource_tags: dict[str, str]
    documents: dict[str, str]  # kind: body
    image_blobs: dict[str, frozenset[str]]  # image digest: the blobs it keeps alive

    @classmethod
    def empty(cls) -> _Rows:
        return cls({}, {}, set(), set(), {}, {}, {})

    def copy(self) -> _Rows:
        return _Rows(
            dict(self.images),
            dict(self.tags),
            set(self.refs),
            set(self.links),
            dict(self.resource_tags),
            dict(self.documents),
            dict(self.image_blobs),
        )

    def tags_by_digest(self, digests: Collection[str]) -> dict[str, list[str]]:
        """The tags of each of ``digests`` that has some, most recently set first."""
        found: dict[str, list[tuple[float, str]]] = {}
        for tag, (digest, at) in self.tags.items():
            if digest in digests:
                found.setdefault(digest, []).append((-at, tag))
        return {d: [tag for _, tag in sorted(keys)] for d, keys in found.items()}


_NO_ROWS = _Rows.empty()


@dataclass(slots=True)
class _State:
    repositories: dict[int, Repository]
    names: dict[tuple[str, str], int]  # (registry id, name): repository id
    rows: dict[int, _Rows]
    blobs: dict[str, BlobInfo]
    uploads: dict[str, UploadSession]
    documents: dict[tuple[str, str, str], str]  # (registry id, kind, key): body
    last_repository_id: int = 0
    last_image_seq: int = 0

    def copy(self) -> _State:
        """A copy sharing the ``_Rows`` (copied again before they change)."""
        return _State(
            dict(self.repositories),
            dict(self.names),
            dict(self.rows),
            dict(self.blobs),
            dict(self.uploads),
            dict(self.documents),
            self.last_repository_id,
            self.last_image_seq,
        )


class MemoryTransaction:
    """One transaction on a state; see ``openecr.ports.metadata.Transaction``."""

    __slots__ = ("_owned", "_state", "_writable")

    def __init__(self, state: _State, *, writable: bool) -> None:
        self._state = state
        self._writable = writable
        self._owned: set[int] = set()  # repository ids whose _Rows this transaction copied

    def _rows(self, repo_id: int) -> _Rows:
        return self._state.rows.get(repo_id, _NO_ROWS)

    def _writing(self) -> _State:
        if not self._writable:
            raise ReadOnlyError("a read transaction cannot write")
        return self._state

    def _own(self, repo_id: int) -> _Rows:
        """The repository's rows, safe to change."""
        state = self._writing()
        if repo_id not in self._owned:
            found = state.rows.get(repo_id)
            state.rows[repo_id] = _Rows.empty() if found is None else found.copy()
            self._owned.add(repo_id)
        return state.rows[repo_id]

    # repositories
    def get_repository(self, registry_id: str, name: str) -> Repository | None:
        repo_id = self._state.names.get((registry_id, name))
        return None if repo_id is None else self._state.repositories[repo_id]

    def list_repositories(
        self, registry_id: str, after: str | None, limit: int
    ) -> list[Repository]:
        names = sorted(
            name
            for registry, name in self._state.names
            if registry == registry_id and (after is None or name > after)
        )
        return [self._state.repositories[self._state.names[registry_id, n]] for n in names[:limit]]

    def create_repository(self, repo: Repository) -> Repository:
        state = self._writing()
        key = (repo.registry_id, repo.name)
        if key in state.names:
            raise ConstraintError(f"repository {repo.name} exists in {repo.registry_id}")
        state.last_repository_id += 1
        created = replace(
            repo,
            id=state.last_repository_id,
            created_at=_instant(repo.created_at),
            tag_mutability=TagMutability(repo.tag_mutability),
            exclusion_filters=tuple(
                ExclusionFilter(f.filter, f.filter_type) for f in repo.exclusion_filters
            ),
            scan_on_push=bool(repo.scan_on_push),
        )
        state.repositories[created.id] = created
        state.names[key] = created.id
        return created

    def set_tag_mutability(
        self, repo_id: int, mutability: TagMutability, filters: Sequence[ExclusionFilter]
    ) -> None:
        state = self._writing()
        repo = state.repositories.get(repo_id)
        if repo is not None:
            state.repositories[repo_id] = replace(
                repo,
                tag_mutability=TagMutability(mutability),
                exclusion_filters=tuple(ExclusionFilter(f.filter, f.filter_type) for f in filters),
            )

    def set_scan_on_push(self, repo_id: int, scan_on_push: bool) -> None:
        state = self._writing()
        repo = state.repositories.get(repo_id)
        if repo is not None:
            state.repositories[repo_id] = replace(repo, scan_on_push=bool(scan_on_push))

    def delete_repository(self, repo_id: int) -> None:
        state = self._writing()
        state.rows.pop(repo_id, None)
        self._owned.discard(repo_id)
        for upload_id in [u.id for u in state.uploads.values() if u.repository_id == repo_id]:
            del state.uploads[upload_id]
        repo = state.repositories.pop(repo_id, None)
        if repo is not None:
            del state.names[repo.registry_id, repo.name]

    def count_images(self, repo_id: int) -> int:
        return len(self._rows(repo_id).images)

    # images and tags
    def get_image(self, repo_id: int, digest: str) -> ImageRecord | None:
        return self._rows(repo_id).images.get(digest)

    def get_tag(self, repo_id: int, tag: str) -> str | None:
        found = self._rows(repo_id).tags.get(tag)
        return None if found is None else found[0]

    def tags_of(self, repo_id: int, digest: str) -> list[str]:
        return self._rows(repo_id).tags_by_digest((digest,)).get(digest, [])

    def snapshot(
        self,
        repo_id: int,
        tags: Collection[str],
        digests: Collection[str],
        *,
        every_tag: bool = False,
        pull_times: bool = True,
    ) -> ImageSnapshot:
        rows = self._rows(repo_id)
        targets: dict[str, str] = {}
        found: dict[str, ImageRecord] = {}
        for tag in tags:
            target = rows.tags.get(tag)
            image = None if target is None else rows.images.get(target[0])
            if image is not None:  # a tag whose image is gone counts as absent
                targets[tag] = image.digest
                found[image.digest] = image
        for digest in digests:
            image = rows.images.get(digest)
            if image is not None:
                found[digest] = image
        listed = set(found) if every_tag else {d for d in digests if d in found}
        by_digest = rows.tags_by_digest(listed)
        return ImageSnapshot(
            repository_id=repo_id,
            tags=targets,
            images=found,
            tags_by_digest={d: tuple(t) for d, t in by_digest.items()},
        )

    def insert_image(self, image: ImageRecord) -> None:
        state = self._writing()
        rows = self._own(image.repository_id)
        if image.digest in rows.images:
            raise ConstraintError(f"image {image.digest} exists in {image.repository_id}")
        state.last_image_seq += 1
        rows.images[image.digest] = replace(
            image,
            manifest=bytes(image.manifest),
            pushed_at=_instant(image.pushed_at),
            seq=state.last_image_seq,
        )

    def set_tag(self, repo_id: int, tag: str, digest: str, at: datetime) -> None:
        rows = self._own(repo_id)
        rows.tags.pop(tag, None)
        rows.tags[tag] = (digest, at.timestamp())

    def delete_tag(self, repo_id: int, tag: str) -> None:
        self._own(repo_id).tags.pop(tag, None)

    def delete_image(self, repo_id: int, digest: str) -> None:
        rows = self._own(repo_id)
        for tag in [t for t, (d, _) in rows.tags.items() if d == digest]:
            del rows.tags[tag]
        rows.refs = {(parent, child) for parent, child in rows.refs if parent != digest}
        rows.images.pop(digest, None)
        rows.image_blobs.pop(digest, None)

    def list_images(
        self,
        repo_id: int,
        tag_status: str,
        after: int | None,
        limit: int,
        storage_class: str | None = None,
    ) -> list[ImageView]:
        rows = self._rows(repo_id)
        tagged = {digest for digest, _ in rows.tags.values()}
        found: list[ImageRecord] = []
        for image in rows.images.values():  # in seq order
            if len(found) >= limit:
                break
            if after is not None and image.seq <= after:
                continue
            if tag_status == "TAGGED" and image.digest not in tagged:
                continue
            if tag_status == "UNTAGGED" and image.digest in tagged:
                continue
            if storage_class is not None and image.storage_class != storage_class:
                continue
            found.append(image)
        by_digest = rows.tags_by_digest({i.digest for i in found})
        return [ImageView(i, tuple(by_digest.get(i.digest, ()))) for i in found]

    # browsing
    def registry_keys(self) -> list[str]:
        return sorted({registry for registry, _ in self._state.names})

    def repository_stats(self, repo_ids: Collection[int]) -> dict[int, RepositoryStats]:
        found: dict[int, RepositoryStats] = {}
        for repo_id in repo_ids:
            held = list(self._rows(repo_id).images.values())
            if held:
                last = max(i.pushed_at for i in held)
                found[repo_id] = RepositoryStats(len(held), sum(i.size for i in held), last)
        return found

    def recent_images(self, repo_id: int, before: int | None, limit: int) -> list[ImageView]:
        rows = self._rows(repo_id)
        found: list[ImageRecord] = []
        for image in reversed(rows.images.values()):  # newest first
            if len(found) >= limit:
                break
            if before is None or image.seq < before:
                found.append(image)
        by_digest = rows.tags_by_digest({i.digest for i in found})
        return [ImageView(i, tuple(by_digest.get(i.digest, ()))) for i in found]

    def set_storage_class(
        self, repo_id: int, digest: str, storage_class: str, at: datetime
    ) -> None:
        found = self._rows(repo_id).images.get(digest)
        if found is None:
            return
        when = "last_archived_at" if storage_class == "ARCHIVE" else "last_activated_at"
        changes: dict[str, object] = {"storage_class": storage_class, when: _instant(at)}
        self._own(repo_id).images[digest] = replace(found, **changes)  # type: ignore[arg-type]

    def record_pulls(
        self, pulls: Sequence[tuple[int, str, datetime]]
    ) -> Sequence[tuple[int, str, datetime]]:
        for repo_id, digest, at in pulls:
            found = self._rows(repo_id).images.get(digest)
            if found is None:
                continue
            if found.last_pulled_at is None or found.last_pulled_at < at:
                self._own(repo_id).images[digest] = replace(found, last_pulled_at=_instant(at))
        return []

    def images_referencing(self, repo_id: int, digest: str) -> list[str]:
        return sorted(parent for parent, child in self._rows(repo_id).refs if child == digest)

    def add_references(self, repo_id: int, parent: str, children: Sequence[str]) -> None:
        if not children:
            return
        rows = self._own(repo_id)
        added = {(parent, child) for child in children}
        if added & rows.refs:
            raise ConstraintError(f"references of {parent} exist in {repo_id}")
        rows.refs |= added

    def add_image_blobs(self, repo_id: int, image: str, blobs: Sequence[str]) -> None:
        rows = self._own(repo_id)
        rows.image_blobs[image] = rows.image_blobs.get(image, frozenset()) | frozenset(blobs)

    def list_tags(self, repo_id: int, after: str | None, limit: int | None) -> list[str]:
        found = sorted(t for t in self._rows(repo_id).tags if after is None or t > after)
        return found if limit is None else found[:limit]

    def lookup_image(
        self, registry_id: str, name: str, tag: str | None, digest: str | None
    ) -> tuple[int | None, ImageRecord | None]:
        repo_id = self._state.names.get((registry_id, name))
        if repo_id is None:
            return None, None
        rows = self._rows(repo_id)
        target = None if tag is None else rows.tags.get(tag)
        # as SQL's COALESCE(tag's digest, digest): a missing tag falls back to ``digest``
        wanted = digest if target is None else target[0]
        return repo_id, None if wanted is None else rows.images.get(wanted)

    def images_with_subject(self, repo_id: int, subject: str) -> list[ImageRecord]:
        return [i for i in self._rows(repo_id).images.values() if i.subject == subject]

    # blobs
    def link_blob(self, repo_id: int, blob: BlobInfo) -> None:
        state = self._writing()
        state.blobs.setdefault(blob.digest, blob)  # the first link's size and type stay
        if blob.digest not in self._rows(repo_id).links:
            self._own(repo_id).links.add(blob.digest)

    def get_linked_blob(self, repo_id: int, digest: str) -> BlobInfo | None:
        if digest not in self._rows(repo_id).links:
            return None
        return self._state.blobs.get(digest)

    def unlink_blob(self, repo_id: int, digest: str) -> bool:
        self._writing()
        if digest not in self._rows(repo_id).links:
            return False
        self._own(repo_id).links.discard(digest)
        return True

    def get_blob(self, digest: str) -> BlobInfo | None:
        return self._state.blobs.get(digest)

    def blobs_in_use(self) -> set[str]:
        found: set[str] = set()
        for rows in self._state.rows.values():
            for blobs in rows.image_blobs.values():
                found |= blobs
        return found

    def blob_in_use(self, digest: str) -> bool:
        return any(
            digest in blobs
            for rows in self._state.rows.values()
            for blobs in rows.image_blobs.values()
        )

    def forget_blob(self, digest: str) -> bool:
        state = self._writing()
        if self.blob_in_use(digest):
            return False
        for repo_id in [r for r, rows in state.rows.items() if digest in rows.links]:
            self._own(repo_id).links.discard(digest)
        state.blobs.pop(digest, None)
        return True

    # uploads
    def create_upload(self, upload: UploadSession) -> None:
        state = self._writing()
        if upload.id in state.uploads:
            raise ConstraintError(f"upload {upload.id} exists")
        state.uploads[upload.id] = replace(upload, created_at=_instant(upload.created_at))

    def get_upload(self, upload_id: str) -> UploadSession | None:
        return self._state.uploads.get(upload_id)

    def update_upload(
        self, upload_id: str, expected_token: str, state: UploadState, at: datetime | None = None
    ) -> bool:
        uploads = self._writing().uploads
        found = uploads.get(upload_id)
        if found is None or found.state.token != expected_token:
            return False
        updated = found.updated_at if at is None else _instant(at)
        uploads[upload_id] = replace(found, state=state, updated_at=updated)
        return True

    def list_uploads(self, repo_id: int | None = None) -> list[UploadSession]:
        found = self._state.uploads.values()
        return sorted(
            (u for u in found if repo_id is None or u.repository_id == repo_id),
            key=lambda u: u.id,
        )

    def delete_upload(self, upload_id: str) -> None:
        self._writing().uploads.pop(upload_id, None)

    # resource tags
    def get_resource_tags(self, repo_id: int) -> list[tuple[str, str]]:
        return sorted(self._rows(repo_id).resource_tags.items())

    def put_resource_tags(self, repo_id: int, tags: Sequence[tuple[str, str]]) -> None:
        self._own(repo_id).resource_tags.update(tags)

    def delete_resource_tags(self, repo_id: int, keys: Sequence[str]) -> None:
        if keys:
            tags = self._own(repo_id).resource_tags
            for key in keys:
                tags.pop(key, None)

    # documents
    def get_document(self, registry_id: str, kind: str, key: str) -> str | None:
        return self._state.documents.get((registry_id, kind, key))

    def put_document(self, registry_id: str, kind: str, key: str, body: str) -> None:
        self._writing().documents[registry_id, kind, key] = body

    def delete_document(self, registry_id: str, kind: str, key: str) -> bool:
        return self._writing().documents.pop((registry_id, kind, key), None) is not None

    def list_documents(self, registry_id: str, kind: str) -> list[tuple[str, str]]:
        return sorted(
            (key, body)
            for (registry, of_kind, key), body in self._state.documents.items()
            if registry == registry_id and of_kind == kind
        )

    def get_repository_document(self, repo_id: int, kind: str) -> str | None:
        return self._rows(repo_id).documents.get(kind)

    def put_repository_document(self, repo_id: int, kind: str, body: str) -> None:
        self._own(repo_id).documents[kind] = body

    def delete_repository_document(self, repo_id: int, kind: str) -> bool:
        if kind not in self._rows(repo_id).documents:
            return False
        del self._own(repo_id).documents[kind]
        return True

    def repository_documents(self, kind: str) -> list[tuple[Repository, str]]:
        found = []
        for repo_id in sorted(self._state.repositories):
            body = self._rows(repo_id).documents.get(kind)
            if body is not None:
                found.append((self._state.repositories[repo_id], body))
        return found

    # totals
    def storage_totals(self) -> StorageTotals:
        state = self._state
        return StorageTotals(
            repositories=len(state.repositories),
            images=sum(len(state.rows.get(i, _NO_ROWS).images) for i in state.repositories),
            blobs=len(state.blobs),
            blob_bytes=sum(blob.size for blob in state.blobs.values()),
            uploads=len(state.uploads),
        )


class MemoryMetadataStore:
    """A MetadataStore whose state lives in this process and dies with it."""

    def __init__(self) -> None:
        self._state = _State({}, {}, {}, {}, {}, {})
        self._lock = threading.Lock()

    @contextmanager
    def read(self) -> Iterator[MemoryTransaction]:
        yield MemoryTransaction(self._state, writable=False)

    @contextmanager
    def write(self) -> Iterator[MemoryTransaction]:
        with self._lock:
            state = self._state.copy()
            yield MemoryTransaction(state, writable=True)
            self._state = state  # published only when the block did not raise

    def close(self) -> None:
        pass


def _conforms(store: MemoryMetadataStore) -> MetadataStore:
    """Never called: mypy checks here that the class matches the port."""
    return store
