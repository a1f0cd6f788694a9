"""The metadata store port: repositories, images, tags, blob links and upload sessions.

All access happens inside a transaction. ``write()`` transactions that touch the same
repository (or the same kind of registry document) are serialised against each other, so
check-then-act rules (tag immutability, "already exists") are atomic; a store may serialise all
writes (SQLite, memory) or only those (PostgreSQL: per-repository locks, across replicas).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Protocol

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


class ImageReads(Protocol):
    """The reads that resolve image ids: a transaction, or an ``ImageSnapshot`` of the ids."""

    def get_image(self, repo_id: int, digest: str) -> ImageRecord | None: ...

    def get_tag(self, repo_id: int, tag: str) -> str | None:
        """The digest ``tag`` points at, or None."""
        ...

    def tags_of(self, repo_id: int, digest: str) -> list[str]:
        """Tags of an image, most recently set first."""
        ...


class Transaction(Protocol):
    # repositories
    def get_repository(self, registry_id: str, name: str) -> Repository | None: ...

    def list_repositories(
        self, registry_id: str, after: str | None, limit: int
    ) -> list[Repository]:
        """Repositories of a registry ordered by name, starting after ``after``."""
        ...

    def create_repository(self, repo: Repository) -> Repository:
        """Insert ``repo`` (its id is ignored) and return it with its id. The caller checked
        that the name is free."""
        ...

    def set_tag_mutability(
        self, repo_id: int, mutability: TagMutability, filters: Sequence[ExclusionFilter]
    ) -> None: ...

    def set_scan_on_push(self, repo_id: int, scan_on_push: bool) -> None:
        """Set the repository's ``imageScanningConfiguration.scanOnPush`` (absent: nothing)."""
        ...

    def delete_repository(self, repo_id: int) -> None:
        """Delete the repository with its images, tags, links, uploads and resource tags."""
        ...

    def count_images(self, repo_id: int) -> int: ...

    # images and tags
    def get_image(self, repo_id: int, digest: str) -> ImageRecord | None: ...

    def get_tag(self, repo_id: int, tag: str) -> str | None:
        """The digest ``tag`` points at, or None."""
        ...

    def tags_of(self, repo_id: int, digest: str) -> list[str]:
        """Tags of an image, most recently set first."""
        ...

    def snapshot(
        self,
        repo_id: int,
        tags: Collection[str],
        digests: Collection[str],
        *,
        every_tag: bool = False,
        pull_times: bool = True,
    ) -> ImageSnapshot:
        """The images ``tags`` and ``digests`` name, in a few reads (a batch of ids costs
        about what one id does). The snapshot lists the tags of each image named by digest,
        and with ``every_tag`` of every image it holds. Without ``pull_times`` the store may
        leave the images' ``last_pulled_at`` None (a pull, which serves manifests, skips reading
        them)."""
        ...

    def insert_image(self, image: ImageRecord) -> None: ...

    def set_tag(self, repo_id: int, tag: str, digest: str, at: datetime) -> None:
        """Point ``tag`` at ``digest``, moving it if it exists."""
        ...

    def delete_tag(self, repo_id: int, tag: str) -> None: ...

    def delete_image(self, repo_id: int, digest: str) -> None:
        """Delete the image and every tag pointing at it."""
        ...

    def list_images(
        self,
        repo_id: int,
        tag_status: str,
        after: int | None,
        limit: int,
        storage_class: str | None = None,
    ) -> list[ImageView]:
        """Images with their tags in push order, after the image whose ``seq`` is ``after``.
        ``tag_status`` is TAGGED, UNTAGGED or ANY; ``storage_class`` (STANDARD or ARCHIVE)
        keeps only images of that class (None: all)."""
        ...

    def set_storage_class(
        self, repo_id: int, digest: str, storage_class: str, at: datetime
    ) -> None:
        """Move an image to STANDARD or ARCHIVE, recording ``at`` as its last activation or
        archival."""
        ...

    def record_pulls(
        self, pulls: Sequence[tuple[int, str, datetime]]
    ) -> Sequence[tuple[int, str, datetime]]:
        """For each (repository id, digest, time), make the image's last pull time that time
        unless it already records a later one; absent images are ignored. Never waits for a
        lock another transaction holds on an image: returns the pulls of the images it skipped
        for that (PostgreSQL), which the caller writes again later."""
        ...

    def images_referencing(self, repo_id: int, digest: str) -> list[str]:
        """Digests of stored indexes in the repository that list ``digest`` as a child."""
        ...

    def add_references(self, repo_id: int, parent: str, children: Sequence[str]) -> None: ...

    def add_image_blobs(self, repo_id: int, image: str, blobs: Sequence[str]) -> None:
        """Record that the image ``image`` of the repository keeps the blobs ``blobs`` alive
        (idempotent); the records go with the image (``delete_image``, ``delete_repository``)."""
        ...

    def list_tags(self, repo_id: int, after: str | None, limit: int | None) -> list[str]:
        """Tag names of a repository in byte order, those after ``after`` only, at most
        ``limit`` of them (None: all)."""
        ...

    def lookup_image(
        self, registry_id: str, name: str, tag: str | None, digest: str | None
    ) -> tuple[int | None, ImageRecord | None]:
        """A pull's lookup in one read: the repository's id (None: no such repository) and
        the image ``tag`` names in it, or ``digest`` when no tag is given (None: absent). The
        image's ``last_pulled_at`` may be None: a pull does not read pull times."""
        ...

    def images_with_subject(self, repo_id: int, subject: str) -> list[ImageRecord]:
        """Images of the repository whose manifest names ``subject`` as its subject, in push
        order."""
        ...

    # browsing (the web page)
    def registry_keys(self) -> list[str]:
        """The keys of the registries that hold at least one repository, in byte order."""
        ...

    def repository_stats(self, repo_ids: Collection[int]) -> dict[int, RepositoryStats]:
        """Image count, summed image sizes and last push of each of ``repo_ids`` that holds
        images (absent: none)."""
        ...

    def recent_images(self, repo_id: int, before: int | None, limit: int) -> list[ImageView]:
        """Images with their tags, newest push first, those pushed before the image whose
        ``seq`` is ``before`` only."""
        ...

    # blobs
    def link_blob(self, repo_id: int, blob: BlobInfo) -> None:
        """Record that the repository holds ``blob`` (idempotent)."""
        ...

    def get_linked_blob(self, repo_id: int, digest: str) -> BlobInfo | None: ...

    def unlink_blob(self, repo_id: int, digest: str) -> bool:
        """Forget that the repository holds ``digest``; return whether it did. The bytes stay
        in the blob store (other repositories may hold them)."""
        ...

    def get_blob(self, digest: str) -> BlobInfo | None:
        """A committed blob in any repository of any registry."""
        ...

    def blobs_in_use(self) -> set[str]:
        """Every digest some image of some repository keeps alive (``add_image_blobs``)."""
        ...

    def blob_in_use(self, digest: str) -> bool:
        """Whether some image of some repository keeps ``digest`` alive."""
        ...

    def forget_blob(self, digest: str) -> bool:
        """Unless some image keeps ``digest`` alive, forget the blob (and every repository's
        link to it) and return True; else change nothing and return False."""
        ...

    # uploads
    def create_upload(self, upload: UploadSession) -> None:
        """Record a new session (its id must be new: a taken one fails)."""
        ...

    def get_upload(self, upload_id: str) -> UploadSession | None: ...

    def update_upload(
        self, upload_id: str, expected_token: str, state: UploadState, at: datetime | None = None
    ) -> bool:
        """Replace the session's state if its token is still ``expected_token`` (and record
        ``at`` as its ``updated_at``); return whether it did: False when the session is gone or
        another write changed it first."""
        ...

    def list_uploads(self, repo_id: int | None = None) -> list[UploadSession]:
        """The open sessions of a repository (None: of every repository)."""
        ...

    def delete_upload(self, upload_id: str) -> None:
        """Forget the session (nothing when it is gone)."""
        ...

    # resource tags
    def get_resource_tags(self, repo_id: int) -> list[tuple[str, str]]: ...

    def put_resource_tags(self, repo_id: int, tags: Sequence[tuple[str, str]]) -> None:
        """Add or overwrite the given keys."""
        ...

    def delete_resource_tags(self, repo_id: int, keys: Sequence[str]) -> None: ...

    # documents: the control plane's JSON (settings, policies, templates), owned by the services
    def get_document(self, registry_id: str, kind: str, key: str) -> str | None:
        """The body of a registry's document of ``kind`` under ``key`` ("" for a singleton)."""
        ...

    def put_document(self, registry_id: str, kind: str, key: str, body: str) -> None:
        """Insert or replace a registry's document."""
        ...

    def delete_document(self, registry_id: str, kind: str, key: str) -> bool:
        """Remove a registry's document; return whether it existed."""
        ...

    def list_documents(self, registry_id: str, kind: str) -> list[tuple[str, str]]:
        """(key, body) of a registry's documents of ``kind``, keys in byte order."""
        ...

    def get_repository_document(self, repo_id: int, kind: str) -> str | None:
        """The body of a repository's document of ``kind`` (deleted with the repository)."""
        ...

    def put_repository_document(self, repo_id: int, kind: str, body: str) -> None:
        """Insert or replace a repository's document."""
        ...

    def delete_repository_document(self, repo_id: int, kind: str) -> bool:
        """Remove a repository's document; return whether it existed."""
        ...

    def repository_documents(self, kind: str) -> list[tuple[Repository, str]]:
        """Every repository (of every registry) holding a document of ``kind``, with its body,
        in repository id order."""
        ...

    # totals
    def storage_totals(self) -> StorageTotals:
        """Repositories, images, blobs (and their bytes) and upload sessions of every
        registry."""
        ...


class MetadataStore(Protocol):
    def read(self) -> AbstractContextManager[Transaction]:
        """A consistent read-only view."""
        ...

    def write(self) -> AbstractContextManager[Transaction]:
        """A serialised read-write transaction, committed on normal exit, rolled back on error."""
        ...

    def close(self) -> None: ...
