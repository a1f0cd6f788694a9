"""MetadataStore on SQLAlchemy Core: SQLite (WAL) by default, PostgreSQL with the same queries.

Timestamps are stored as float seconds since the epoch (UTC). SQLite write transactions start
with ``BEGIN IMMEDIATE`` so writers serialise instead of failing on lock upgrades.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cache
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
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import Select

from openecr.domain.model import (
    BlobInfo,
    ExclusionFilter,
    ImageRecord,
    ImageSnapshot,
    ImageView,
    Repository,
    TagMutability,
    UploadSession,
    UploadState,
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
    "upload_sessions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("repository_id", Integer, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("store_key", String(256), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("token", String(64), nullable=False),
    Column("extra", Text, nullable=False),
)

resource_tags = Table(
    "resource_tags",
    metadata,
    Column("repository_id", Integer, nullable=False),
    Column("key", String(128), nullable=False),
    Column("value", String(256), nullable=False),
    PrimaryKeyConstraint("repository_id", "key"),
)


class _Prepared:
    """A SELECT compiled once per dialect and run on the connection's DBAPI cursor.

    The hot reads (every pull, every BatchGetImage) skip SQLAlchemy's per-execution work
    (statement building, cache keys, result metadata), which costs several times the query
    itself on SQLite. Parameters are the statement's ``bindparam`` names; rows are plain
    tuples in the order of the selected columns. The statement only uses types whose values
    the DBAPI drivers take and return as they are (integers, floats, strings, bytes)."""

    __slots__ = ("_compiled", "statement")

    def __init__(self, statement: Select[Any]) -> None:
        self.statement = statement
        self._compiled: dict[str, tuple[str, tuple[str, ...] | None]] = {}

    def _compile(self, dialect: Dialect) -> tuple[str, tuple[str, ...] | None]:
        found = self._compiled.get(dialect.name)
        if found is None:
            compiled = self.statement.compile(dialect=dialect)
            positions = tuple(compiled.positiontup or ()) if compiled.positional else None
            found = self._compiled[dialect.name] = (str(compiled), positions)
        return found

    def rows(self, conn: Connection, **params: Any) -> Sequence[Any]:
        sql, positions = self._compile(conn.dialect)
        cursor = conn.connection.cursor()
        try:
            if positions is None:
                cursor.execute(sql, params)
            else:
                cursor.execute(sql, tuple(params[name] for name in positions))
            return cursor.fetchall()
        finally:
            cursor.close()

    def first(self, conn: Connection, **params: Any) -> Any:
        found = self.rows(conn, **params)
        return found[0] if found else None


def _in(column: Any, prefix: str, count: int) -> Any:
    """``column IN (:prefix0, ..., :prefix<count-1>)``."""
    return column.in_([bindparam(f"{prefix}{i}") for i in range(count)])


def _numbered(prefix: str, values: Sequence[str]) -> dict[str, str]:
    return {f"{prefix}{i}": value for i, value in enumerate(values)}


_REPOSITORY_COLUMNS = (
    repositories.c.id,
    repositories.c.registry_id,
    repositories.c.name,
    repositories.c.created_at,
    repositories.c.tag_mutability,
    repositories.c.exclusion_filters,
    repositories.c.scan_on_push,
    repositories.c.encryption_type,
    repositories.c.kms_key,
)
_IMAGE_COLUMNS = (
    images.c.id,
    images.c.repository_id,
    images.c.digest,
    images.c.manifest,
    images.c.media_type,
    images.c.artifact_media_type,
    images.c.size,
    images.c.pushed_at,
    images.c.subject,
    images.c.last_pull,
)

_GET_REPOSITORY = _Prepared(
    select(*_REPOSITORY_COLUMNS).where(
        repositories.c.registry_id == bindparam("registry_id"),
        repositories.c.name == bindparam("name"),
    )
)
_GET_IMAGE = _Prepared(
    select(*_IMAGE_COLUMNS).where(
        images.c.repository_id == bindparam("repo_id"), images.c.digest == bindparam("digest")
    )
)
_GET_TAG = _Prepared(
    select(tags.c.digest).where(
        tags.c.repository_id == bindparam("repo_id"), tags.c.tag == bindparam("tag")
    )
)
_TAGS_OF = _Prepared(
    select(tags.c.tag)
    .where(tags.c.repository_id == bindparam("repo_id"), tags.c.digest == bindparam("digest"))
    .order_by(tags.c.set_at.desc(), tags.c.tag)
)
_GET_BLOB = _Prepared(
    select(blobs.c.digest, blobs.c.size, blobs.c.media_type).where(
        blobs.c.digest == bindparam("digest")
    )
)
_GET_LINKED_BLOB = _Prepared(
    select(blobs.c.digest, blobs.c.size, blobs.c.media_type)
    .join(blob_links, blob_links.c.digest == blobs.c.digest)
    .where(
        blob_links.c.repository_id == bindparam("repo_id"),
        blob_links.c.digest == bindparam("digest"),
    )
)
# A pull's lookup in one statement (the hot path of every manifest GET): the repository, the
# tag's digest (or the given digest) and the image, joined.
_LOOKUP_IMAGE = _Prepared(
    select(repositories.c.id, *_IMAGE_COLUMNS)
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


@cache
def _images_tagged(count: int) -> _Prepared:
    """Each of ``count`` tags that exists, with the image it names."""
    return _Prepared(
        select(tags.c.tag, *_IMAGE_COLUMNS)
        .select_from(
            tags.join(
                images,
                and_(
                    images.c.repository_id == tags.c.repository_id,
                    images.c.digest == tags.c.digest,
                ),
            )
        )
        .where(tags.c.repository_id == bindparam("repo_id"), _in(tags.c.tag, "t", count))
    )


@cache
def _images_named(count: int) -> _Prepared:
    return _Prepared(
        select(*_IMAGE_COLUMNS).where(
            images.c.repository_id == bindparam("repo_id"), _in(images.c.digest, "d", count)
        )
    )


@cache
def _tags_of_images(count: int) -> _Prepared:
    return _Prepared(
        select(tags.c.tag, tags.c.digest)
        .where(tags.c.repository_id == bindparam("repo_id"), _in(tags.c.digest, "d", count))
        .order_by(tags.c.set_at.desc(), tags.c.tag)
    )


# an IN list of at most this many values per statement (SQLite allows 32,766 variables)
_IN_CHUNK = 500


def _chunks(values: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(values), _IN_CHUNK):
        yield values[start : start + _IN_CHUNK]


def _ts(value: datetime) -> float:
    return value.timestamp()


def _dt(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def _repository(row: Sequence[Any]) -> Repository:
    """A Repository from a row of ``_REPOSITORY_COLUMNS``."""
    id_, registry_id, name, created_at, mutability, filters_json, scan, encryption, kms = row
    filters = tuple(
        ExclusionFilter(f["filter"], f.get("filterType", "WILDCARD"))
        for f in json.loads(filters_json or "[]")
    )
    return Repository(
        id=id_,
        registry_id=registry_id,
        name=name,
        created_at=datetime.fromtimestamp(created_at, UTC),
        tag_mutability=TagMutability(mutability),
        exclusion_filters=filters,
        scan_on_push=bool(scan),
        encryption_type=encryption,
        kms_key=kms,
    )


def _image(row: Sequence[Any]) -> ImageRecord:
    """An ImageRecord from a row of ``_IMAGE_COLUMNS``."""
    seq, repo_id, digest, manifest, media_type, artifact_type, size, pushed, subject, pull = row
    return ImageRecord(
        repository_id=repo_id,
        digest=digest,
        manifest=bytes(manifest),
        media_type=media_type,
        artifact_media_type=artifact_type,
        size=size,
        pushed_at=datetime.fromtimestamp(pushed, UTC),
        subject=subject,
        last_pull=_dt(pull),
        seq=seq,
    )


def _filters_json(filters: Sequence[ExclusionFilter]) -> str:
    return json.dumps([{"filterType": f.filter_type, "filter": f.filter} for f in filters])


class SqlTransaction:
    """One transaction on one connection; see ``openecr.ports.metadata.Transaction``."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    # repositories
    def get_repository(self, registry_id: str, name: str) -> Repository | None:
        row = _GET_REPOSITORY.first(self.conn, registry_id=registry_id, name=name)
        return _repository(row) if row else None

    def list_repositories(
        self, registry_id: str, after: str | None, limit: int
    ) -> list[Repository]:
        query = select(*_REPOSITORY_COLUMNS).where(repositories.c.registry_id == registry_id)
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
        row = _GET_IMAGE.first(self.conn, repo_id=repo_id, digest=digest)
        return _image(row) if row else None

    def get_tag(self, repo_id: int, tag: str) -> str | None:
        row = _GET_TAG.first(self.conn, repo_id=repo_id, tag=tag)
        return None if row is None else str(row[0])

    def tags_of(self, repo_id: int, digest: str) -> list[str]:
        return [row[0] for row in _TAGS_OF.rows(self.conn, repo_id=repo_id, digest=digest)]

    def snapshot(
        self,
        repo_id: int,
        tags: Collection[str],
        digests: Collection[str],
        *,
        every_tag: bool = False,
    ) -> ImageSnapshot:
        targets: dict[str, str] = {}
        found: dict[str, ImageRecord] = {}
        for chunk in _chunks(list(dict.fromkeys(tags))):
            params = _numbered("t", chunk)
            for row in _images_tagged(len(chunk)).rows(self.conn, repo_id=repo_id, **params):
                targets[row[0]] = row[3]
                found.setdefault(row[3], _image(row[1:]))
        asked = [d for d in dict.fromkeys(digests) if d not in found]
        for chunk in _chunks(asked):
            params = _numbered("d", chunk)
            for row in _images_named(len(chunk)).rows(self.conn, repo_id=repo_id, **params):
                found[row[2]] = _image(row)
        tags_by_digest: dict[str, list[str]] = {}
        listed = list(found) if every_tag else [d for d in dict.fromkeys(digests) if d in found]
        for chunk in _chunks(listed):
            params = _numbered("d", chunk)
            for tag, digest in _tags_of_images(len(chunk)).rows(
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
        query = select(*_IMAGE_COLUMNS).where(images.c.repository_id == repo_id)
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
        row = _LOOKUP_IMAGE.first(
            self.conn, registry_id=registry_id, name=name, tag=tag, digest=digest
        )
        if row is None:
            return None, None
        return row[0], _image(row[1:]) if row[1] is not None else None

    def images_with_subject(self, repo_id: int, subject: str) -> list[ImageRecord]:
        rows = self.conn.execute(
            select(*_IMAGE_COLUMNS)
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
        row = _GET_LINKED_BLOB.first(self.conn, repo_id=repo_id, digest=digest)
        return BlobInfo(*row) if row else None

    def unlink_blob(self, repo_id: int, digest: str) -> bool:
        result = self.conn.execute(
            delete(blob_links).where(
                blob_links.c.repository_id == repo_id, blob_links.c.digest == digest
            )
        )
        return bool(result.rowcount)

    def get_blob(self, digest: str) -> BlobInfo | None:
        row = _GET_BLOB.first(self.conn, digest=digest)
        return BlobInfo(*row) if row else None

    # uploads
    def create_upload(self, upload: UploadSession) -> None:
        self.conn.execute(
            insert(uploads).values(
                id=upload.id,
                repository_id=upload.repository_id,
                created_at=_ts(upload.created_at),
                store_key=upload.state.key,
                size=upload.state.size,
                token=upload.state.token,
                extra=upload.state.extra,
            )
        )

    def get_upload(self, upload_id: str) -> UploadSession | None:
        row = self.conn.execute(select(uploads).where(uploads.c.id == upload_id)).first()
        if row is None:
            return None
        created = _dt(row.created_at)
        assert created is not None
        state = UploadState(row.store_key, row.size, row.token, row.extra)
        return UploadSession(row.id, row.repository_id, created, state)

    def update_upload(self, upload_id: str, expected_token: str, state: UploadState) -> bool:
        result = self.conn.execute(
            update(uploads)
            .where(uploads.c.id == upload_id, uploads.c.token == expected_token)
            .values(store_key=state.key, size=state.size, token=state.token, extra=state.extra)
        )
        return bool(result.rowcount)

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

    # read connections kept open between transactions (checking one out of the pool and
    # back costs more than a short read)
    IDLE_READERS = 4

    def __init__(self, url: str) -> None:
        self.url = url
        self._is_sqlite = url.startswith("sqlite")
        self._reader = self._engine(immediate=False)
        self._writer = self._engine(immediate=True) if self._is_sqlite else self._reader
        self._idle: list[Connection] = []  # list.pop/append are atomic: no lock needed
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
                if not immediate:  # readers map the file: no copy into each page cache
                    cursor.execute("PRAGMA mmap_size=268435456")
                cursor.close()

            @event.listens_for(engine, "begin")
            def _begin(conn: Connection) -> None:
                # on the DBAPI connection: exec_driver_sql would cost more than the BEGIN
                conn.connection.dbapi_connection.execute(begin)  # type: ignore[union-attr]

        return engine

    @contextmanager
    def read(self) -> Iterator[SqlTransaction]:
        try:
            conn = self._idle.pop()
        except IndexError:
            conn = self._reader.connect()
        try:
            with conn.begin():
                yield SqlTransaction(conn)
        except BaseException:
            conn.close()  # a connection that failed goes back to the pool, which checks it
            raise
        if len(self._idle) < self.IDLE_READERS:
            self._idle.append(conn)
        else:
            conn.close()

    @contextmanager
    def write(self) -> Iterator[SqlTransaction]:
        with self._writer.connect() as conn, conn.begin():
            if not self._is_sqlite:
                # serialise writers across replicas, as BEGIN IMMEDIATE does for SQLite
                conn.execute(select(func.pg_advisory_xact_lock(WRITE_LOCK_KEY)))
            yield SqlTransaction(conn)

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()
        self._reader.dispose()
        if self._writer is not self._reader:
            self._writer.dispose()
