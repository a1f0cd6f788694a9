"""The schema as it was when migrations began (the tables ``create_all`` made until then).

Revision ID: 0001
Revises: -

Databases made before migrations (no ``alembic_version`` table) are adopted here: their missing
tables and indexes are created, the columns added since a table was first created are added,
PostgreSQL's ``repositories.registry_id`` of before regions (``VARCHAR(12)``) is widened to 64,
and the ``uploads`` table of before upload states is dropped (its open uploads are given up).
The tables are written out here, not imported from ``schema``: a migration never changes.
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Double,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    inspect,
)

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

metadata = MetaData()

repositories = Table(
    "repositories",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # the registry key: the account, or ``<account>.<region>`` outside the default region
    Column("registry_id", String(64), nullable=False),
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
    Column("storage_class", String(16)),  # NULL: STANDARD (the common case reads cheapest)
    Column("last_archived_at", Double),
    Column("last_activated_at", Double),
    Column("last_pulled_at", Double),
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

# one row per open upload session; the blob store's state of it is opaque here
upload_sessions = Table(
    "upload_sessions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("repository_id", Integer, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("store_key", String(1024), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("token", String(256), nullable=False),
    Column("extra", Text, nullable=False, default=""),
)

resource_tags = Table(
    "resource_tags",
    metadata,
    Column("repository_id", Integer, nullable=False),
    Column("key", String(128), nullable=False),
    Column("value", String(256), nullable=False),
    PrimaryKeyConstraint("repository_id", "key"),
)

documents = Table(
    "documents",
    metadata,
    Column("registry_id", String(64), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("key", String(512), nullable=False),
    Column("body", Text, nullable=False),
    PrimaryKeyConstraint("registry_id", "kind", "key"),
)

repository_documents = Table(
    "repository_documents",
    metadata,
    Column("repository_id", Integer, nullable=False),
    Column("kind", String(64), nullable=False),
    Column("body", Text, nullable=False),
    PrimaryKeyConstraint("repository_id", "kind"),
    Index("repository_documents_kind", "kind", "repository_id"),
)


# columns added to tables before migrations began: (table, column) -> their DDL type
ADDED_COLUMNS = {
    ("images", "storage_class"): "VARCHAR(16)",
    ("images", "last_archived_at"): "DOUBLE PRECISION",
    ("images", "last_activated_at"): "DOUBLE PRECISION",
    ("images", "last_pulled_at"): "DOUBLE PRECISION",
}
# VARCHAR columns widened before migrations began (SQLite ignores lengths)
WIDENED_COLUMNS = {("repositories", "registry_id"): 64}
DROPPED_TABLES = ("uploads",)  # upload sessions before UploadState (size and parts only)


def upgrade() -> None:
    conn = op.get_bind()
    for name in DROPPED_TABLES:
        op.execute(f"DROP TABLE IF EXISTS {name}")
    inspector = inspect(conn)
    existing = set(inspector.get_table_names())
    for table in metadata.sorted_tables:
        if table.name not in existing:
            table.create(conn)
            continue
        have = {c["name"]: c["type"] for c in inspector.get_columns(table.name)}
        for (name, column), ddl in ADDED_COLUMNS.items():
            if name == table.name and column not in have:
                op.execute(f"ALTER TABLE {name} ADD COLUMN {column} {ddl}")
        if conn.dialect.name == "postgresql":
            for (name, column), length in WIDENED_COLUMNS.items():
                current = getattr(have.get(column), "length", None)  # None: unbounded
                if name == table.name and current is not None and current < length:
                    op.execute(f"ALTER TABLE {name} ALTER COLUMN {column} TYPE VARCHAR({length})")
        indexes = {i["name"] for i in inspector.get_indexes(table.name)}
        for index in table.indexes:
            if index.name not in indexes:
                index.create(conn)
