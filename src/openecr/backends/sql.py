"""MetadataStore on SQLAlchemy Core: SQLite (WAL) by default, PostgreSQL with the same queries.

Timestamps are stored as float seconds since the epoch (UTC). SQLite write transactions start
with ``BEGIN IMMEDIATE`` so writers serialise instead of failing on lock upgrades.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Double,
    Engine,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    bindparam,
    create_engine,
    delete,
    event,
    exists,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Row

from openecr.domain.model import (
    BlobInfo,
    ExclusionFilter,
    ImageRecord,
    ImageView,
    Repository,
    TagMutability,
    UploadSession,
)

metadata = MetaData()

WRITE_LOCK_KEY = 0x6F70656E656372  # "openecr": the advisory lock PostgreSQL writers take

repositories = Table(
    "repositories",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("registry_id", String(12), nullable=False),
    Column("name", String(256), nullable=False),
    Column("created_at", Double, nullable=False),
    Column("tag_mutability", String(32), nullable=False),
    Column("exclusion_filters", Text, nullable=False, default="[]"),
    Column("scan_on_push", Boolean, nullable=False, default=False),
    Column("encryption_type", String(16), nullable=False, default="AES256"),
    Column("kms_key", String(2048)),
    UniqueConstraint("registry_id", "name", name="uq_repository_name"),
)

images = Table(
    "images",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("repository_id", Integer, nullable=False),
    Column("digest", String(140), nullable=False),
    Column("manifest", LargeBinary, nullable=False),
    Column("media_type", String(255), nullable=False),
    Column("artifact_media_type", String(255)),
    Column("size", BigInteger, nullable=False),
    Column("pushed_at", Double, nullable=False),
    Column("subject", String(140)),
    Column("last_pull", Double),
    UniqueConstraint("repository_id", "digest", name="uq_image_digest"),
    Index("ix_images_subject", "repository_id", "subject"),
)

tags = Table(
    "tags",
    metadata,
    Column("repository_id", Integer, nullable=False),
    Column("tag", String(300), nullable=False),
    Column("digest", String(140), nullable=False),
    Column("set_at", Double, nullable=False),
    PrimaryKeyConstraint("repository_id", "tag"),
    Index("ix_tags_digest", "repository_id", "digest"),
)

image_refs = Table(
    "image_refs",
    metadata,
    Column("repository_id", Integer, nullable=False),
    Column("parent", String(140), nullable=False),
    Column("child", String(140), nullable=False),
    PrimaryKeyConstraint("repository_id", "parent", "child"),
    Index("ix_image_refs_child", "repository_id", "child"),
)

blobs = Table(
    "blobs",
    metadata,
    Column("digest", String(140), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("media_type", String(255)),
)

blob_links = Table(
    "blob_links",
    metadata,
    Column("repository_id", Integer, nullable=False),
    Column("digest", String(140), nullable=False),
    PrimaryKeyConstraint("repository_id", "digest"),
)

uploads = Table(
    "uploads",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("repository_id", Integer, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("size", BigInteger, nullable=False, default=0),
    Column("parts", Integer, nullable=False, default=0),
)

resource_tags = Table(
    "resource_tags",
    metadata,
    Column("repository_id", Integer, nullable=False),
    Column("key", String(128), nullable=False),
    Column("value", String(256), nullable=False),
    PrimaryKeyConstraint("repository_id", "key"),
)


# A pull's lookup as one prebuilt statement (the hot path of every manifest GET): the
# repository, the tag's digest (or the given digest) and the image, joined.
_LOOKUP_IMAGE = (
    select(repositories.c.id.label("repo_id"), images)
    .select_from(
        repositories.outerjoin(
            tags, and_(tags.c.repository_id == repositories.c.id, tags.c.tag == bindparam("tag"))
        ).outerjoin(
            images,
            and_(
                images.c.repository_id == repositories.c.id,
                images.c.digest == func.coalesce(tags.c.digest, bindparam("digest")),
            ),
        )
    )
    .where(
        repositories.c.registry_id == bindparam("registry_id"),
        repositories.c.name == bindparam("name"),
    )
)


def _ts(value: datetime) -> float:
    return value.timestamp()


def _dt(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def _repository(row: Row[Any]) -> Repository:
    filters = tuple(
        ExclusionFilter(f["filter"], f.get("filterType", "WILDCARD"))
        for f in json.loads(row.exclusion_filters or "[]")
    )
    created = _dt(row.created_at)
    assert created is not None
    return Repository(
        id=row.id,
        registry_id=row.registry_id,
        name=row.name,
        created_at=created,
        tag_mutability=TagMutability(row.tag_mutability),
        exclusion_filters=filters,
        scan_on_push=bool(row.scan_on_push),
        encryption_type=row.encryption_type,
        kms_key=row.kms_key,
    )


def _image(row: Row[Any]) -> ImageRecord:
    pushed = _dt(row.pushed_at)
    assert pushed is not None
    return ImageRecord(
        repository_id=row.repository_id,
        digest=row.digest,
        manifest=bytes(row.manifest),
        media_type=row.media_type,
        artifact_media_type=row.artifact_media_type,
        size=row.size,
        pushed_at=pushed,
        subject=row.subject,
        last_pull=_dt(row.last_pull),
        seq=row.id,
    )


def _filters_json(filters: Sequence[ExclusionFilter]) -> str:
    return json.dumps([{"filterType": f.filter_type, "filter": f.filter} for f in filters])


class SqlTransaction:
    """One transaction on one connection; see ``openecr.ports.metadata.Transaction``."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    # repositories
    def get_repository(self, registry_id: str, name: str) -> Repository | None:
        row = self.conn.execute(
            select(repositories).where(
                repositories.c.registry_id == registry_id, repositories.c.name == name
            )
        ).first()
        return _repository(row) if row else None

    def list_repositories(
        self, registry_id: str, after: str | None, limit: int
    ) -> list[Repository]:
        query = select(repositories).where(repositories.c.registry_id == registry_id)
        if after is not None:
            query = query.where(repositories.c.name > after)
        rows = self.conn.execute(query.order_by(repositories.c.name).limit(limit))
        return [_repository(r) for r in rows]

    def create_repository(self, repo: Repository) -> Repository:
        result = self.conn.execute(
            insert(repositories).values(
                registry_id=repo.registry_id,
                name=repo.name,
                created_at=_ts(repo.created_at),
                tag_mutability=repo.tag_mutability.value,
                exclusion_filters=_filters_json(repo.exclusion_filters),
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
        self.conn.execute(
            update(repositories)
            .where(repositories.c.id == repo_id)
            .values(tag_mutability=mutability.value, exclusion_filters=_filters_json(filters))
        )

    def delete_repository(self, repo_id: int) -> None:
        for table in (images, tags, image_refs, blob_links, uploads, resource_tags):
            self.conn.execute(delete(table).where(table.c.repository_id == repo_id))
        self.conn.execute(delete(repositories).where(repositories.c.id == repo_id))

    def count_images(self, repo_id: int) -> int:
        value = self.conn.execute(
            select(func.count()).select_from(images).where(images.c.repository_id == repo_id)
        ).scalar_one()
        return int(value)

    # images and tags
    def get_image(self, repo_id: int, digest: str) -> ImageRecord | None:
        row = self.conn.execute(
            select(images).where(images.c.repository_id == repo_id, images.c.digest == digest)
        ).first()
        return _image(row) if row else None

    def get_tag(self, repo_id: int, tag: str) -> str | None:
        value = self.conn.execute(
            select(tags.c.digest).where(tags.c.repository_id == repo_id, tags.c.tag == tag)
        ).scalar_one_or_none()
        return None if value is None else str(value)

    def tags_of(self, repo_id: int, digest: str) -> list[str]:
        rows = self.conn.execute(
            select(tags.c.tag)
            .where(tags.c.repository_id == repo_id, tags.c.digest == digest)
            .order_by(tags.c.set_at.desc(), tags.c.tag)
        )
        return [r.tag for r in rows]

    def insert_image(self, image: ImageRecord) -> None:
        self.conn.execute(
            insert(images).values(
                repository_id=image.repository_id,
                digest=image.digest,
                manifest=image.manifest,
                media_type=image.media_type,
                artifact_media_type=image.artifact_media_type,
                size=image.size,
                pushed_at=_ts(image.pushed_at),
                subject=image.subject,
            )
        )

    def set_tag(self, repo_id: int, tag: str, digest: str, at: datetime) -> None:
        self.delete_tag(repo_id, tag)
        self.conn.execute(
            insert(tags).values(repository_id=repo_id, tag=tag, digest=digest, set_at=_ts(at))
        )

    def delete_tag(self, repo_id: int, tag: str) -> None:
        self.conn.execute(delete(tags).where(tags.c.repository_id == repo_id, tags.c.tag == tag))

    def delete_image(self, repo_id: int, digest: str) -> None:
        self.conn.execute(
            delete(tags).where(tags.c.repository_id == repo_id, tags.c.digest == digest)
        )
        self.conn.execute(
            delete(image_refs).where(
                image_refs.c.repository_id == repo_id, image_refs.c.parent == digest
            )
        )
        self.conn.execute(
            delete(images).where(images.c.repository_id == repo_id, images.c.digest == digest)
        )

    def list_images(
        self, repo_id: int, tag_status: str, after: int | None, limit: int
    ) -> list[ImageView]:
        query = select(images).where(images.c.repository_id == repo_id)
        if after is not None:
            query = query.where(images.c.id > after)
        tagged = exists().where(
            and_(tags.c.repository_id == repo_id, tags.c.digest == images.c.digest)
        )
        if tag_status == "TAGGED":
            query = query.where(tagged)
        elif tag_status == "UNTAGGED":
            query = query.where(~tagged)
        found = [_image(r) for r in self.conn.execute(query.order_by(images.c.id).limit(limit))]
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

    def images_referencing(self, repo_id: int, digest: str) -> list[str]:
        rows = self.conn.execute(
            select(image_refs.c.parent)
            .where(image_refs.c.repository_id == repo_id, image_refs.c.child == digest)
            .order_by(image_refs.c.parent)
        )
        return [r.parent for r in rows]

    def add_references(self, repo_id: int, parent: str, children: Sequence[str]) -> None:
        unique = sorted(set(children))
        if unique:
            self.conn.execute(
                insert(image_refs),
                [{"repository_id": repo_id, "parent": parent, "child": c} for c in unique],
            )

    def list_tags(self, repo_id: int, after: str | None, limit: int | None) -> list[str]:
        # byte order on every database (PostgreSQL would otherwise sort by its locale)
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
        params = {"registry_id": registry_id, "name": name, "tag": tag, "digest": digest}
        row = self.conn.execute(_LOOKUP_IMAGE, params).first()
        if row is None:
            return None, None
        return row.repo_id, _image(row) if row.id is not None else None

    def images_with_subject(self, repo_id: int, subject: str) -> list[ImageRecord]:
        rows = self.conn.execute(
            select(images)
            .where(images.c.repository_id == repo_id, images.c.subject == subject)
            .order_by(images.c.id)
        )
        return [_image(r) for r in rows]

    # blobs
    def link_blob(self, repo_id: int, blob: BlobInfo) -> None:
        if self.get_blob(blob.digest) is None:
            self.conn.execute(
                insert(blobs).values(digest=blob.digest, size=blob.size, media_type=blob.media_type)
            )
        if self.get_linked_blob(repo_id, blob.digest) is None:
            self.conn.execute(insert(blob_links).values(repository_id=repo_id, digest=blob.digest))

    def get_linked_blob(self, repo_id: int, digest: str) -> BlobInfo | None:
        row = self.conn.execute(
            select(blobs)
            .join(blob_links, blob_links.c.digest == blobs.c.digest)
            .where(blob_links.c.repository_id == repo_id, blob_links.c.digest == digest)
        ).first()
        return BlobInfo(row.digest, row.size, row.media_type) if row else None

    def unlink_blob(self, repo_id: int, digest: str) -> bool:
        result = self.conn.execute(
            delete(blob_links).where(
                blob_links.c.repository_id == repo_id, blob_links.c.digest == digest
            )
        )
        return bool(result.rowcount)

    def get_blob(self, digest: str) -> BlobInfo | None:
        row = self.conn.execute(select(blobs).where(blobs.c.digest == digest)).first()
        return BlobInfo(row.digest, row.size, row.media_type) if row else None

    # uploads
    def create_upload(self, upload: UploadSession) -> None:
        self.conn.execute(
            insert(uploads).values(
                id=upload.id,
                repository_id=upload.repository_id,
                created_at=_ts(upload.created_at),
                size=upload.size,
                parts=upload.parts,
            )
        )

    def get_upload(self, upload_id: str) -> UploadSession | None:
        row = self.conn.execute(select(uploads).where(uploads.c.id == upload_id)).first()
        if row is None:
            return None
        created = _dt(row.created_at)
        assert created is not None
        return UploadSession(row.id, row.repository_id, created, row.size, row.parts)

    def update_upload(self, upload_id: str, size: int, parts: int) -> None:
        self.conn.execute(
            update(uploads).where(uploads.c.id == upload_id).values(size=size, parts=parts)
        )

    def delete_upload(self, upload_id: str) -> None:
        self.conn.execute(delete(uploads).where(uploads.c.id == upload_id))

    # resource tags
    def get_resource_tags(self, repo_id: int) -> list[tuple[str, str]]:
        rows = self.conn.execute(
            select(resource_tags.c.key, resource_tags.c.value)
            .where(resource_tags.c.repository_id == repo_id)
            .order_by(resource_tags.c.key)
        )
        return [(r.key, r.value) for r in rows]

    def put_resource_tags(self, repo_id: int, items: Sequence[tuple[str, str]]) -> None:
        self.delete_resource_tags(repo_id, [k for k, _ in items])
        if items:
            self.conn.execute(
                insert(resource_tags),
                [{"repository_id": repo_id, "key": k, "value": v} for k, v in dict(items).items()],
            )

    def delete_resource_tags(self, repo_id: int, keys: Sequence[str]) -> None:
        if keys:
            self.conn.execute(
                delete(resource_tags).where(
                    resource_tags.c.repository_id == repo_id, resource_tags.c.key.in_(list(keys))
                )
            )


class SqlMetadataStore:
    """A MetadataStore over one SQLAlchemy engine (two for SQLite: deferred reads and
    ``BEGIN IMMEDIATE`` writes)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._is_sqlite = url.startswith("sqlite")
        self._reader = self._engine(immediate=False)
        self._writer = self._engine(immediate=True) if self._is_sqlite else self._reader
        metadata.create_all(self._writer)

    @classmethod
    def sqlite(cls, path: Path) -> SqlMetadataStore:
        path.parent.mkdir(parents=True, exist_ok=True)
        return cls(f"sqlite:///{path}")

    def _engine(self, *, immediate: bool) -> Engine:
        engine = create_engine(self.url, pool_size=8, max_overflow=16)
        if self._is_sqlite:
            begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"

            @event.listens_for(engine, "connect")
            def _connect(dbapi_conn: Any, _record: Any) -> None:
                dbapi_conn.isolation_level = None
                cursor = dbapi_conn.cursor()
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=FULL")
                cursor.execute("PRAGMA busy_timeout=30000")
                cursor.close()

            @event.listens_for(engine, "begin")
            def _begin(conn: Connection) -> None:
                conn.exec_driver_sql(begin)

        return engine

    @contextmanager
    def read(self) -> Iterator[SqlTransaction]:
        with self._reader.connect() as conn, conn.begin():
            yield SqlTransaction(conn)

    @contextmanager
    def write(self) -> Iterator[SqlTransaction]:
        with self._writer.connect() as conn, conn.begin():
            if not self._is_sqlite:
                # serialise writers across replicas, as BEGIN IMMEDIATE does for SQLite
                conn.execute(select(func.pg_advisory_xact_lock(WRITE_LOCK_KEY)))
            yield SqlTransaction(conn)

    def close(self) -> None:
        self._reader.dispose()
        if self._writer is not self._reader:
            self._writer.dispose()
