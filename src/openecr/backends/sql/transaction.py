"""One metadata transaction on one SQLAlchemy connection."""

from __future__ import annotations

import functools
import json
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from openecr.backends.sql.prepared import (
    BLOBS_OF_IMAGE,
    DELETE_TAG,
    GET_BLOB,
    GET_DOCUMENT,
    GET_IMAGE,
    GET_LINKED_BLOB,
    GET_REPOSITORY,
    GET_REPOSITORY_DOCUMENT,
    GET_TAG,
    IMAGE_COLUMNS,
    IMAGES_FROM,
    INSERT_IMAGE,
    INSERT_IMAGE_BLOB,
    INSERT_TAG,
    LOOKUP_IMAGE,
    REPOSITORY_COLUMNS,
    TAGS_OF,
    Prepared,
    chunks,
    images_named,
    images_tagged,
    numbered,
    tags_of_images,
)
from openecr.backends.sql.rows import dt, filters_json, image_from, repository_from, ts
from openecr.backends.sql.schema import (
    blob_links,
    blobs,
    documents,
    image_blobs,
    image_pulls,
    image_refs,
    images,
    repositories,
    repository_documents,
    resource_tags,
    tags,
    upload_sessions,
)
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

_c = images.c
_p = image_pulls.c


@functools.cache
def record_pull_held() -> Prepared:
    """PostgreSQL: an upsert of one image's pull time (bound: ``repo_id``, ``image_digest``,
    ``at``) that never moves a time back; the writer holds the image's row, so it exists."""
    from sqlalchemy.dialects.postgresql import insert as pg_insert  # PostgreSQL's alone

    stmt = pg_insert(image_pulls).values(
        repository_id=bindparam("repo_id"),
        digest=bindparam("image_digest"),
        last_pulled_at=bindparam("at"),
    )
    return Prepared(
        stmt.on_conflict_do_update(
            index_elements=[_p.repository_id, _p.digest],
            set_={"last_pulled_at": stmt.excluded.last_pulled_at},
            where=_p.last_pulled_at < stmt.excluded.last_pulled_at,
        )
    )


# SQLite: every image of a JSON array [[repository id, digest, time], ...] that exists
RECORD_PULLS_SQLITE = (
    "INSERT INTO image_pulls (repository_id, digest, last_pulled_at)"
    " SELECT i.repository_id, i.digest, json_extract(j.value, '$[2]')"
    " FROM json_each(?) AS j JOIN images AS i"
    " ON i.repository_id = json_extract(j.value, '$[0]')"
    " AND i.digest = json_extract(j.value, '$[1]')"
    " WHERE true"  # SQLite's parser needs it before an upsert's ON CONFLICT
    " ON CONFLICT (repository_id, digest) DO UPDATE SET last_pulled_at = excluded.last_pulled_at"
    " WHERE image_pulls.last_pulled_at < excluded.last_pulled_at"
)
PULL_CHUNK = 1000  # images per row-value IN list (PostgreSQL takes at most 65535 parameters)


def _upload_from(row: Any) -> UploadSession:
    state = UploadState(row.store_key, row.size, row.token, row.extra)
    updated = None if row.updated_at is None else dt(row.updated_at)
    return UploadSession(row.id, row.repository_id, dt(row.created_at), state, updated)


BLOB_REFERENCES_LOCK = 0x6F70656E656362  # "openecb": adding blob references vs forgetting blobs


class SqlTransaction:
    """One transaction on one connection; see ``openecr.ports.metadata.Transaction``.

    With ``locking`` (PostgreSQL's write transactions), writes to one repository are serialised
    across connections and replicas, and writes to different repositories run in parallel: a
    repository looked up by name is locked by a transaction-scoped advisory lock on its name
    (which also serialises creators of one name) and by its row (``FOR UPDATE``); one touched by
    id only, by its row. Registry-wide documents lock their (registry, kind). Locks are held
    until the transaction ends. Without ``locking`` (reads; SQLite, whose writes are serialised
    whole by ``BEGIN IMMEDIATE``) nothing is locked."""

    def __init__(self, conn: Connection, *, locking: bool = False) -> None:
        self.conn = conn
        self.locking = locking
        self._locked: set[int] = set()
        self._sharing_blobs = False

    def _advisory(self, key: str) -> None:
        self.conn.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(key, 0))))

    def _lock_repository(self, repo_id: int) -> None:
        if self.locking and repo_id not in self._locked:
            self._locked.add(repo_id)
            self.conn.execute(
                select(repositories.c.id).where(repositories.c.id == repo_id).with_for_update()
            )

    def _share_blobs(self) -> None:
        """Writes that add references to blobs hold ``BLOB_REFERENCES_LOCK`` shared (they run
        side by side); a collection forgetting a blob takes it exclusively."""
        if self.locking and not self._sharing_blobs:
            self._sharing_blobs = True
            self.conn.execute(select(func.pg_advisory_xact_lock_shared(BLOB_REFERENCES_LOCK)))

    def _lock_documents(self, registry_id: str, kind: str) -> None:
        if self.locking:
            self._advisory(f"documents:{registry_id}:{kind}")

    # repositories
    def get_repository(self, registry_id: str, name: str) -> Repository | None:
        if self.locking:
            self._advisory(f"repository:{registry_id}:{name}")
            found = self.conn.execute(
                select(*REPOSITORY_COLUMNS)
                .where(repositories.c.registry_id == registry_id, repositories.c.name == name)
                .with_for_update()
            ).first()
            if found is None:
                return None
            self._locked.add(found[0])
            return repository_from(tuple(found))
        row = GET_REPOSITORY.first(self.conn, registry_id=registry_id, name=name)
        return repository_from(row) if row else None

    def list_repositories(
        self, registry_id: str, after: str | None, limit: int
    ) -> list[Repository]:
        query = select(*REPOSITORY_COLUMNS).where(repositories.c.registry_id == registry_id)
        if after is not None:
            query = query.where(repositories.c.name > after)
        rows = self.conn.execute(query.order_by(repositories.c.name).limit(limit))
        return [repository_from(r) for r in rows]

    def create_repository(self, repo: Repository) -> Repository:
        if self.locking:
            self._advisory(f"repository:{repo.registry_id}:{repo.name}")
        result = self.conn.execute(
            insert(repositories).values(
                registry_id=repo.registry_id,
                name=repo.name,
                created_at=ts(repo.created_at),
                tag_mutability=repo.tag_mutability.value,
                exclusion_filters=filters_json(repo.exclusion_filters),
                scan_on_push=repo.scan_on_push,
                encryption_type=repo.encryption_type,
                kms_key=repo.kms_key,
            )
        )
        key = result.inserted_primary_key
        assert key is not None
        created = self.get_repository(repo.registry_id, repo.name)
        assert created is not None and created.id == key[0]
        return created

    def set_tag_mutability(
        self, repo_id: int, mutability: TagMutability, filters: Sequence[ExclusionFilter]
    ) -> None:
        self._lock_repository(repo_id)
        self.conn.execute(
            update(repositories)
            .where(repositories.c.id == repo_id)
            .values(tag_mutability=mutability.value, exclusion_filters=filters_json(filters))
        )

    def set_scan_on_push(self, repo_id: int, scan_on_push: bool) -> None:
        self._lock_repository(repo_id)
        self.conn.execute(
            update(repositories)
            .where(repositories.c.id == repo_id)
            .values(scan_on_push=bool(scan_on_push))
        )

    def delete_repository(self, repo_id: int) -> None:
        self._lock_repository(repo_id)
        for table in (
            images,
            image_pulls,  # after images: the pull-time writer holds an image's row first
            tags,
            image_refs,
            image_blobs,
            blob_links,
            upload_sessions,
            resource_tags,
            repository_documents,
        ):
            self.conn.execute(delete(table).where(table.c.repository_id == repo_id))
        self.conn.execute(delete(repositories).where(repositories.c.id == repo_id))

    def count_images(self, repo_id: int) -> int:
        self._lock_repository(repo_id)
        value = self.conn.execute(
            select(func.count()).select_from(images).where(images.c.repository_id == repo_id)
        ).scalar_one()
        return int(value)

    # images and tags
    def get_image(self, repo_id: int, digest: str) -> ImageRecord | None:
        self._lock_repository(repo_id)
        row = GET_IMAGE.first(self.conn, repo_id=repo_id, digest=digest)
        return image_from(row) if row else None

    def get_tag(self, repo_id: int, tag: str) -> str | None:
        self._lock_repository(repo_id)
        row = GET_TAG.first(self.conn, repo_id=repo_id, tag=tag)
        return None if row is None else str(row[0])

    def tags_of(self, repo_id: int, digest: str) -> list[str]:
        self._lock_repository(repo_id)
        return [row[0] for row in TAGS_OF.rows(self.conn, repo_id=repo_id, digest=digest)]

    def snapshot(
        self,
        repo_id: int,
        tags: Collection[str],
        digests: Collection[str],
        *,
        every_tag: bool = False,
        pull_times: bool = True,
    ) -> ImageSnapshot:
        self._lock_repository(repo_id)
        targets: dict[str, str] = {}
        found: dict[str, ImageRecord] = {}
        for chunk in chunks(list(dict.fromkeys(tags))):
            params = numbered("t", chunk)
            for row in images_tagged(len(chunk), pull_times).rows(
                self.conn, repo_id=repo_id, **params
            ):
                targets[row[0]] = row[3]
                found.setdefault(row[3], image_from(row[1:]))
        asked = [d for d in dict.fromkeys(digests) if d not in found]
        for chunk in chunks(asked):
            params = numbered("d", chunk)
            for row in images_named(len(chunk), pull_times).rows(
                self.conn, repo_id=repo_id, **params
            ):
                found[row[2]] = image_from(row)
        tags_by_digest: dict[str, list[str]] = {}
        listed = list(found) if every_tag else [d for d in dict.fromkeys(digests) if d in found]
        for chunk in chunks(listed):
            params = numbered("d", chunk)
            for tag, digest in tags_of_images(len(chunk)).rows(
                self.conn, repo_id=repo_id, **params
            ):
                tags_by_digest.setdefault(digest, []).append(tag)
        return ImageSnapshot(
            repository_id=repo_id,
            tags=targets,
            images=found,
            tags_by_digest={d: tuple(t) for d, t in tags_by_digest.items()},
        )

    def insert_image(self, image: ImageRecord) -> None:
        INSERT_IMAGE.execute(
            self.conn,
            repository_id=image.repository_id,
            digest=image.digest,
            manifest=image.manifest,
            media_type=image.media_type,
            artifact_media_type=image.artifact_media_type,
            size=image.size,
            pushed_at=ts(image.pushed_at),
            subject=image.subject,
        )

    def set_tag(self, repo_id: int, tag: str, digest: str, at: datetime) -> None:
        self._lock_repository(repo_id)
        DELETE_TAG.execute(self.conn, repo_id=repo_id, tag=tag)
        INSERT_TAG.execute(self.conn, repo_id=repo_id, tag=tag, digest=digest, set_at=ts(at))

    def delete_tag(self, repo_id: int, tag: str) -> None:
        self._lock_repository(repo_id)
        DELETE_TAG.execute(self.conn, repo_id=repo_id, tag=tag)

    def delete_image(self, repo_id: int, digest: str) -> None:
        self._lock_repository(repo_id)
        self.conn.execute(
            delete(tags).where(tags.c.repository_id == repo_id, tags.c.digest == digest)
        )
        self.conn.execute(
            delete(image_refs).where(
                image_refs.c.repository_id == repo_id, image_refs.c.parent == digest
            )
        )
        self.conn.execute(
            delete(image_blobs).where(
                image_blobs.c.repository_id == repo_id, image_blobs.c.image == digest
            )
        )
        self.conn.execute(
            delete(images).where(images.c.repository_id == repo_id, images.c.digest == digest)
        )
        # after the image's row: the pull-time writer holds that row while it writes this one
        self.conn.execute(
            delete(image_pulls).where(
                image_pulls.c.repository_id == repo_id, image_pulls.c.digest == digest
            )
        )

    def list_images(
        self,
        repo_id: int,
        tag_status: str,
        after: int | None,
        limit: int,
        storage_class: str | None = None,
    ) -> list[ImageView]:
        self._lock_repository(repo_id)
        query = select(*IMAGE_COLUMNS).select_from(IMAGES_FROM)
        query = query.where(images.c.repository_id == repo_id)
        if storage_class == "STANDARD":
            query = query.where(images.c.storage_class.is_(None))
        elif storage_class is not None:
            query = query.where(images.c.storage_class == storage_class)
        if after is not None:
            query = query.where(images.c.id > after)
        tagged = exists().where(
            and_(tags.c.repository_id == repo_id, tags.c.digest == images.c.digest)
        )
        if tag_status == "TAGGED":
            query = query.where(tagged)
        elif tag_status == "UNTAGGED":
            query = query.where(~tagged)
        found = [image_from(r) for r in self.conn.execute(query.order_by(images.c.id).limit(limit))]
        return self._with_tags(repo_id, found)

    # browsing
    def registry_keys(self) -> list[str]:
        query = select(repositories.c.registry_id).distinct().order_by(repositories.c.registry_id)
        return [str(row[0]) for row in self.conn.execute(query)]

    def repository_stats(self, repo_ids: Collection[int]) -> dict[int, RepositoryStats]:
        if not repo_ids:
            return {}
        query = (
            select(
                images.c.repository_id,
                func.count(),
                func.coalesce(func.sum(images.c.size), 0),
                func.max(images.c.pushed_at),
            )
            .where(images.c.repository_id.in_(list(repo_ids)))
            .group_by(images.c.repository_id)
        )
        return {
            int(row[0]): RepositoryStats(int(row[1]), int(row[2]), dt(row[3]))
            for row in self.conn.execute(query)
        }

    def recent_images(self, repo_id: int, before: int | None, limit: int) -> list[ImageView]:
        query = select(*IMAGE_COLUMNS).select_from(IMAGES_FROM)
        query = query.where(images.c.repository_id == repo_id)
        if before is not None:
            query = query.where(images.c.id < before)
        rows = self.conn.execute(query.order_by(images.c.id.desc()).limit(limit))
        return self._with_tags(repo_id, [image_from(r) for r in rows])

    def _with_tags(self, repo_id: int, found: list[ImageRecord]) -> list[ImageView]:
        by_digest: dict[str, list[str]] = {}
        if found:
            rows = self.conn.execute(
                select(tags.c.tag, tags.c.digest)
                .where(
                    tags.c.repository_id == repo_id,
                    tags.c.digest.in_([i.digest for i in found]),
                )
                .order_by(tags.c.set_at.desc(), tags.c.tag)
            )
            for row in rows:
                by_digest.setdefault(row.digest, []).append(row.tag)
        return [ImageView(i, tuple(by_digest.get(i.digest, ()))) for i in found]

    def set_storage_class(
        self, repo_id: int, digest: str, storage_class: str, at: datetime
    ) -> None:
        self._lock_repository(repo_id)
        when = "last_archived_at" if storage_class == "ARCHIVE" else "last_activated_at"
        self.conn.execute(
            update(images)
            .where(images.c.repository_id == repo_id, images.c.digest == digest)
            .values(
                {
                    "storage_class": None if storage_class == "STANDARD" else storage_class,
                    when: ts(at),
                }
            )
        )

    def record_pulls(
        self, pulls: Sequence[tuple[int, str, datetime]]
    ) -> list[tuple[int, str, datetime]]:
        if not pulls:
            return []
        if not self.locking:  # SQLite: the transaction has the whole database
            # one statement for every image (a JSON array of them): the driver releases the GIL
            # once, where a statement per image (executemany) would hand it back and forth with
            # the request threads once per image, slowing them far more than the writes cost
            stamps = {at: ts(at) for at in {at for _, _, at in pulls}}  # a few per flush
            batch = json.dumps([[r, d, stamps[at]] for r, d, at in pulls])
            self.conn.exec_driver_sql(RECORD_PULLS_SQLITE, (batch,))
            return []
        # PostgreSQL: lock the images' rows that no other transaction holds (in id order) and
        # skip the others, so this never waits for a lock and no write can deadlock with it
        wanted: dict[tuple[int, str], datetime] = {}
        for repo_id, digest, at in pulls:
            key = (repo_id, digest)
            if key not in wanted or wanted[key] < at:
                wanted[key] = at
        keys = list(wanted)
        held: dict[tuple[int, str], int] = {}
        busy: list[tuple[int, str, datetime]] = []
        for start in range(0, len(keys), PULL_CHUNK):
            chunk = keys[start : start + PULL_CHUNK]
            named = tuple_(_c.repository_id, _c.digest).in_(chunk)
            rows = self.conn.execute(
                select(_c.id, _c.repository_id, _c.digest)
                .where(named)
                .order_by(_c.id)
                .with_for_update(skip_locked=True, key_share=True)
            ).all()
            held.update(((r.repository_id, r.digest), r.id) for r in rows)
            if len(rows) < len(chunk):  # absent (ignored) or held by another transaction
                stored = self.conn.execute(select(_c.repository_id, _c.digest).where(named))
                busy.extend(
                    (r.repository_id, r.digest, wanted[(r.repository_id, r.digest)])
                    for r in stored
                    if (r.repository_id, r.digest) not in held
                )
        if held:  # in id order, as locked: only deletes that hold the image touch its row
            in_order = sorted(held.items(), key=lambda item: item[1])
            record_pull_held().execute_many(
                self.conn,
                [
                    {"repo_id": r, "image_digest": d, "at": ts(wanted[(r, d)])}
                    for (r, d), _ in in_order
                ],
            )
        return busy

    def images_referencing(self, repo_id: int, digest: str) -> list[str]:
        self._lock_repository(repo_id)
        rows = self.conn.execute(
            select(image_refs.c.parent)
            .where(image_refs.c.repository_id == repo_id, image_refs.c.child == digest)
            .order_by(image_refs.c.parent)
        )
        return [r.parent for r in rows]

    def add_references(self, repo_id: int, parent: str, children: Sequence[str]) -> None:
        self._lock_repository(repo_id)
        unique = sorted(set(children))
        if unique:
            self.conn.execute(
                insert(image_refs),
                [{"repository_id": repo_id, "parent": parent, "child": c} for c in unique],
            )

    def add_image_blobs(self, repo_id: int, image: str, blobs: Sequence[str]) -> None:
        self._lock_repository(repo_id)
        self._share_blobs()
        have = {r[0] for r in BLOBS_OF_IMAGE.rows(self.conn, repo_id=repo_id, image=image)}
        new = [b for b in dict.fromkeys(blobs) if b not in have]
        if new:
            INSERT_IMAGE_BLOB.execute_many(
                self.conn, [{"repo_id": repo_id, "image": image, "blob": b} for b in new]
            )

    def list_tags(self, repo_id: int, after: str | None, limit: int | None) -> list[str]:
        # byte order on every database (PostgreSQL would otherwise sort by its locale)
        self._lock_repository(repo_id)
        column = tags.c.tag if self.conn.dialect.name == "sqlite" else tags.c.tag.collate("C")
        query = select(tags.c.tag).where(tags.c.repository_id == repo_id)
        if after is not None:
            query = query.where(column > after)
        query = query.order_by(column)
        if limit is not None:
            query = query.limit(limit)
        return [r.tag for r in self.conn.execute(query)]

    def lookup_image(
        self, registry_id: str, name: str, tag: str | None, digest: str | None
    ) -> tuple[int | None, ImageRecord | None]:
        row = LOOKUP_IMAGE.first(
            self.conn, registry_id=registry_id, name=name, tag=tag, digest=digest
        )
        if row is None:
            return None, None
        return row[0], image_from(row[1:]) if row[1] is not None else None

    def images_with_subject(self, repo_id: int, subject: str) -> list[ImageRecord]:
        self._lock_repository(repo_id)
        rows = self.conn.execute(
            select(*IMAGE_COLUMNS)
            .select_from(IMAGES_FROM)
            .where(images.c.repository_id == repo_id, images.c.subject == subject)
            .order_by(images.c.id)
        )
        return [image_from(r) for r in rows]

    # blobs
    def link_blob(self, repo_id: int, blob: BlobInfo) -> None:
        self._lock_repository(repo_id)
        self._share_blobs()
        if self.get_blob(blob.digest) is None:
            # another repository's transaction may insert the same blob at the same moment
            row = {"digest": blob.digest, "size": blob.size, "media_type": blob.media_type}
            dialect = self.conn.dialect.name
            if dialect == "postgresql":
                from sqlalchemy.dialects.postgresql import insert as pg_insert  # 2 MB

                self.conn.execute(pg_insert(blobs).values(row).on_conflict_do_nothing())
            else:
                self.conn.execute(sqlite_insert(blobs).values(row).on_conflict_do_nothing())
        if self.get_linked_blob(repo_id, blob.digest) is None:
            self.conn.execute(insert(blob_links).values(repository_id=repo_id, digest=blob.digest))

    def get_linked_blob(self, repo_id: int, digest: str) -> BlobInfo | None:
        self._lock_repository(repo_id)
        row = GET_LINKED_BLOB.first(self.conn, repo_id=repo_id, digest=digest)
        return BlobInfo(*row) if row else None

    def unlink_blob(self, repo_id: int, digest: str) -> bool:
        self._lock_repository(repo_id)
        result = self.conn.execute(
            delete(blob_links).where(
                blob_links.c.repository_id == repo_id, blob_links.c.digest == digest
            )
        )
        return bool(result.rowcount)

    def get_blob(self, digest: str) -> BlobInfo | None:
        row = GET_BLOB.first(self.conn, digest=digest)
        return BlobInfo(*row) if row else None

    def blobs_in_use(self) -> set[str]:
        return {r.blob for r in self.conn.execute(select(image_blobs.c.blob).distinct())}

    def blob_in_use(self, digest: str) -> bool:
        query = select(image_blobs.c.blob).where(image_blobs.c.blob == digest).limit(1)
        return self.conn.execute(query).first() is not None

    def forget_blob(self, digest: str) -> bool:
        if self.locking:  # wait for the writes that may be adding references to it
            self.conn.execute(select(func.pg_advisory_xact_lock(BLOB_REFERENCES_LOCK)))
        if self.blob_in_use(digest):
            return False
        self.conn.execute(delete(blob_links).where(blob_links.c.digest == digest))
        self.conn.execute(delete(blobs).where(blobs.c.digest == digest))
        return True

    # uploads
    def create_upload(self, upload: UploadSession) -> None:
        state = upload.state
        self.conn.execute(
            insert(upload_sessions).values(
                id=upload.id,
                repository_id=upload.repository_id,
                created_at=ts(upload.created_at),
                store_key=state.key,
                size=state.size,
                token=state.token,
                extra=state.extra,
            )
        )

    def get_upload(self, upload_id: str) -> UploadSession | None:
        row = self.conn.execute(
            select(upload_sessions).where(upload_sessions.c.id == upload_id)
        ).first()
        if row is None:
            return None
        return _upload_from(row)

    def update_upload(
        self, upload_id: str, expected_token: str, state: UploadState, at: datetime | None = None
    ) -> bool:
        values: dict[str, Any] = {
            "store_key": state.key,
            "size": state.size,
            "token": state.token,
            "extra": state.extra,
        }
        if at is not None:
            values["updated_at"] = ts(at)
        result = self.conn.execute(
            update(upload_sessions)
            .where(upload_sessions.c.id == upload_id, upload_sessions.c.token == expected_token)
            .values(values)
        )
        return bool(result.rowcount)

    def list_uploads(self, repo_id: int | None = None) -> list[UploadSession]:
        query = select(upload_sessions)
        if repo_id is not None:
            query = query.where(upload_sessions.c.repository_id == repo_id)
        return [
            _upload_from(row) for row in self.conn.execute(query.order_by(upload_sessions.c.id))
        ]

    def delete_upload(self, upload_id: str) -> None:
        self.conn.execute(delete(upload_sessions).where(upload_sessions.c.id == upload_id))

    # resource tags
    def get_resource_tags(self, repo_id: int) -> list[tuple[str, str]]:
        self._lock_repository(repo_id)
        rows = self.conn.execute(
            select(resource_tags.c.key, resource_tags.c.value)
            .where(resource_tags.c.repository_id == repo_id)
            .order_by(resource_tags.c.key)
        )
        return [(r.key, r.value) for r in rows]

    def put_resource_tags(self, repo_id: int, items: Sequence[tuple[str, str]]) -> None:
        self._lock_repository(repo_id)
        self.delete_resource_tags(repo_id, [k for k, _ in items])
        if items:
            self.conn.execute(
                insert(resource_tags),
                [{"repository_id": repo_id, "key": k, "value": v} for k, v in dict(items).items()],
            )

    def delete_resource_tags(self, repo_id: int, keys: Sequence[str]) -> None:
        self._lock_repository(repo_id)
        if keys:
            self.conn.execute(
                delete(resource_tags).where(
                    resource_tags.c.repository_id == repo_id, resource_tags.c.key.in_(list(keys))
                )
            )

    # documents
    def _document(self, registry_id: str, kind: str, key: str) -> Any:
        c = documents.c
        return and_(c.registry_id == registry_id, c.kind == kind, c.key == key)

    def get_document(self, registry_id: str, kind: str, key: str) -> str | None:
        self._lock_documents(registry_id, kind)
        row = GET_DOCUMENT.first(self.conn, registry_id=registry_id, kind=kind, key=key)
        return None if row is None else str(row[0])

    def put_document(self, registry_id: str, kind: str, key: str, body: str) -> None:
        self._lock_documents(registry_id, kind)
        self.delete_document(registry_id, kind, key)
        row = {"registry_id": registry_id, "kind": kind, "key": key, "body": body}
        self.conn.execute(insert(documents).values(**row))

    def delete_document(self, registry_id: str, kind: str, key: str) -> bool:
        self._lock_documents(registry_id, kind)
        found = self.conn.execute(delete(documents).where(self._document(registry_id, kind, key)))
        return bool(found.rowcount)

    def list_documents(self, registry_id: str, kind: str) -> list[tuple[str, str]]:
        self._lock_documents(registry_id, kind)
        c = documents.c
        rows = self.conn.execute(
            select(c.key, c.body).where(c.registry_id == registry_id, c.kind == kind)
        )
        return sorted((r.key, r.body) for r in rows)  # byte order on every database

    def _repository_document(self, repo_id: int, kind: str) -> Any:
        c = repository_documents.c
        return and_(c.repository_id == repo_id, c.kind == kind)

    def get_repository_document(self, repo_id: int, kind: str) -> str | None:
        self._lock_repository(repo_id)
        row = GET_REPOSITORY_DOCUMENT.first(self.conn, repo_id=repo_id, kind=kind)
        return None if row is None else str(row[0])

    def put_repository_document(self, repo_id: int, kind: str, body: str) -> None:
        self._lock_repository(repo_id)
        self.delete_repository_document(repo_id, kind)
        row = {"repository_id": repo_id, "kind": kind, "body": body}
        self.conn.execute(insert(repository_documents).values(**row))

    def delete_repository_document(self, repo_id: int, kind: str) -> bool:
        self._lock_repository(repo_id)
        query = delete(repository_documents).where(self._repository_document(repo_id, kind))
        return bool(self.conn.execute(query).rowcount)

    def repository_documents(self, kind: str) -> list[tuple[Repository, str]]:
        c = repository_documents.c
        rows = self.conn.execute(
            select(*REPOSITORY_COLUMNS, c.body)
            .select_from(
                repositories.join(repository_documents, c.repository_id == repositories.c.id)
            )
            .where(c.kind == kind)
            .order_by(repositories.c.id)
        )
        return [(repository_from(tuple(r)[:-1]), r[-1]) for r in rows]

    # totals
    def storage_totals(self) -> StorageTotals:
        def count(table: Any) -> int:
            return int(self.conn.execute(select(func.count()).select_from(table)).scalar_one())

        blob_bytes = self.conn.execute(select(func.coalesce(func.sum(blobs.c.size), 0)))
        return StorageTotals(
            repositories=count(repositories),
            images=count(images),
            blobs=count(blobs),
            blob_bytes=int(blob_bytes.scalar_one()),
            uploads=count(upload_sessions),
        )
