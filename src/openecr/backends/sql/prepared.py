"""The hot statements (the reads of every pull, the writes of every push), compiled once per
dialect and run on the connection's DBAPI cursor."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from functools import cache
from typing import Any

from sqlalchemy import (
    Connection,
    Delete,
    Insert,
    and_,
    bindparam,
    delete,
    func,
    insert,
    null,
    select,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.sql import Select

from openecr.backends.sql.schema import (
    blob_links,
    blobs,
    documents,
    image_blobs,
    image_pulls,
    images,
    repositories,
    repository_documents,
    tags,
)


class Prepared:
    """A statement compiled once per dialect and run on the connection's DBAPI cursor.

    The hot reads (every pull, every BatchGetImage) and a push's writes skip SQLAlchemy's
    per-execution work (statement building, cache keys, result metadata), which costs several
    times the query itself on SQLite. Parameters are the statement's ``bindparam`` names;
    rows are plain tuples in the order of the selected columns. The statement only uses types
    whose values the DBAPI drivers take and return as they are (integers, floats, strings,
    bytes)."""

    __slots__ = ("_compiled", "statement")

    def __init__(self, statement: Select[Any] | Insert | Delete) -> None:
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
        except conn.dialect.loaded_dbapi.Error as error:
            raise _wrapped(conn, sql, params, error) from error
        finally:
            cursor.close()

    def first(self, conn: Connection, **params: Any) -> Any:
        found = self.rows(conn, **params)
        return found[0] if found else None

    def execute(self, conn: Connection, **params: Any) -> int:
        """Run a write; returns the rows it changed."""
        return self.execute_many(conn, [params])

    def execute_many(self, conn: Connection, params: Sequence[Mapping[str, Any]]) -> int:
        """Run a write once per parameter set (the DBAPI's ``executemany``)."""
        sql, positions = self._compile(conn.dialect)
        cursor = conn.connection.cursor()
        try:
            if positions is None:
                cursor.executemany(sql, params)
            else:
                cursor.executemany(sql, [tuple(p[name] for name in positions) for p in params])
            return int(cursor.rowcount)
        except conn.dialect.loaded_dbapi.Error as error:
            raise _wrapped(conn, sql, params, error) from error
        finally:
            cursor.close()


def _wrapped(conn: Connection, sql: str, params: Any, error: Exception) -> StatementError:
    """The driver's ``error`` as SQLAlchemy raises it (IntegrityError, OperationalError...), as
    a statement run through SQLAlchemy would fail."""
    return DBAPIError.instance(
        sql, params, error, conn.dialect.loaded_dbapi.Error, dialect=conn.dialect
    )


def _in(column: Any, prefix: str, count: int) -> Any:
    """``column IN (:prefix0, ..., :prefix<count-1>)``."""
    return column.in_([bindparam(f"{prefix}{i}") for i in range(count)])


def numbered(prefix: str, values: Sequence[str]) -> dict[str, str]:
    """The parameters of an IN list built with ``prefix``."""
    return {f"{prefix}{i}": value for i, value in enumerate(values)}


# an IN list of at most this many values per statement (SQLite allows 32,766 variables)
IN_CHUNK = 500


def chunks(values: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(values), IN_CHUNK):
        yield values[start : start + IN_CHUNK]


REPOSITORY_COLUMNS = (
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
IMAGE_COLUMNS = (
    images.c.id,
    images.c.repository_id,
    images.c.digest,
    images.c.manifest,
    images.c.media_type,
    images.c.artifact_media_type,
    images.c.size,
    images.c.pushed_at,
    images.c.subject,
    images.c.storage_class,
    images.c.last_archived_at,
    images.c.last_activated_at,
    image_pulls.c.last_pulled_at,
)
# an image's pull time, for the images of a FROM clause (select IMAGE_COLUMNS from IMAGES_FROM,
# or outer-join image_pulls on PULLS_OF_IMAGE where images is joined to other tables)
PULLS_OF_IMAGE = and_(
    image_pulls.c.repository_id == images.c.repository_id, image_pulls.c.digest == images.c.digest
)
IMAGES_FROM = images.outerjoin(image_pulls, PULLS_OF_IMAGE)

GET_REPOSITORY = Prepared(
    select(*REPOSITORY_COLUMNS).where(
        repositories.c.registry_id == bindparam("registry_id"),
        repositories.c.name == bindparam("name"),
    )
)
GET_IMAGE = Prepared(
    select(*IMAGE_COLUMNS)
    .select_from(IMAGES_FROM)
    .where(images.c.repository_id == bindparam("repo_id"), images.c.digest == bindparam("digest"))
)
GET_TAG = Prepared(
    select(tags.c.digest).where(
        tags.c.repository_id == bindparam("repo_id"), tags.c.tag == bindparam("tag")
    )
)
TAGS_OF = Prepared(
    select(tags.c.tag)
    .where(tags.c.repository_id == bindparam("repo_id"), tags.c.digest == bindparam("digest"))
    .order_by(tags.c.set_at.desc(), tags.c.tag)
)
GET_BLOB = Prepared(
    select(blobs.c.digest, blobs.c.size, blobs.c.media_type).where(
        blobs.c.digest == bindparam("digest")
    )
)
GET_LINKED_BLOB = Prepared(
    select(blobs.c.digest, blobs.c.size, blobs.c.media_type)
    .join(blob_links, blob_links.c.digest == blobs.c.digest)
    .where(
        blob_links.c.repository_id == bindparam("repo_id"),
        blob_links.c.digest == bindparam("digest"),
    )
)
# a push's writes
INSERT_IMAGE = Prepared(
    insert(images).values(
        {
            name: bindparam(name)
            for name in (
                "repository_id",
                "digest",
                "manifest",
                "media_type",
                "artifact_media_type",
                "size",
                "pushed_at",
                "subject",
            )
        }
    )
)
DELETE_TAG = Prepared(
    delete(tags).where(tags.c.repository_id == bindparam("repo_id"), tags.c.tag == bindparam("tag"))
)
INSERT_TAG = Prepared(
    insert(tags).values(
        repository_id=bindparam("repo_id"),
        tag=bindparam("tag"),
        digest=bindparam("digest"),
        set_at=bindparam("set_at"),
    )
)
BLOBS_OF_IMAGE = Prepared(
    select(image_blobs.c.blob).where(
        image_blobs.c.repository_id == bindparam("repo_id"),
        image_blobs.c.image == bindparam("image"),
    )
)
INSERT_IMAGE_BLOB = Prepared(
    insert(image_blobs).values(
        repository_id=bindparam("repo_id"), image=bindparam("image"), blob=bindparam("blob")
    )
)
# control-plane documents: read on every authenticated request (policies) and by other checks
GET_DOCUMENT = Prepared(
    select(documents.c.body).where(
        documents.c.registry_id == bindparam("registry_id"),
        documents.c.kind == bindparam("kind"),
        documents.c.key == bindparam("key"),
    )
)
GET_REPOSITORY_DOCUMENT = Prepared(
    select(repository_documents.c.body).where(
        repository_documents.c.repository_id == bindparam("repo_id"),
        repository_documents.c.kind == bindparam("kind"),
    )
)


def _image_columns(pull_times: bool) -> tuple[Any, ...]:
    """IMAGE_COLUMNS, or (not ``pull_times``) with NULL for the pull time: no join."""
    if pull_times:
        return IMAGE_COLUMNS
    return (*IMAGE_COLUMNS[:-1], null().label("last_pulled_at"))


# A pull's lookup in one statement (the hot path of every manifest GET): the repository, the
# tag's digest (or the given digest) and the image, joined; a pull serves the manifest, so the
# pull time is not read (NULL, no join)
LOOKUP_IMAGE = Prepared(
    select(repositories.c.id, *_image_columns(False))
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
def images_tagged(count: int, pull_times: bool = True) -> Prepared:
    """Each of ``count`` tags that exists, with the image it names (and its pull time)."""
    joined = tags.join(
        images,
        and_(images.c.repository_id == tags.c.repository_id, images.c.digest == tags.c.digest),
    )
    return Prepared(
        select(tags.c.tag, *_image_columns(pull_times))
        .select_from(joined.outerjoin(image_pulls, PULLS_OF_IMAGE) if pull_times else joined)
        .where(tags.c.repository_id == bindparam("repo_id"), _in(tags.c.tag, "t", count))
    )


@cache
def images_named(count: int, pull_times: bool = True) -> Prepared:
    """Each of ``count`` digests that is an image (and its pull time)."""
    return Prepared(
        select(*_image_columns(pull_times))
        .select_from(IMAGES_FROM if pull_times else images)
        .where(images.c.repository_id == bindparam("repo_id"), _in(images.c.digest, "d", count))
    )


@cache
def tags_of_images(count: int) -> Prepared:
    """The tags of ``count`` digests, most recently set first."""
    return Prepared(
        select(tags.c.tag, tags.c.digest)
        .where(tags.c.repository_id == bindparam("repo_id"), _in(tags.c.digest, "d", count))
        .order_by(tags.c.set_at.desc(), tags.c.tag)
    )
