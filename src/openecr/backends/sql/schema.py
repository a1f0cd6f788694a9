"""The tables of the SQL metadata store, as the newest migration leaves them (``migrations/``;
a test keeps the two equal: a change here is a new migration).

Timestamps are float seconds since the epoch (UTC). Rows of a repository carry its id; no
foreign keys are declared, so deleting a repository deletes its rows explicitly. The images
table of older data dirs still has a ``last_pull`` column, never written, that nothing reads;
its ``last_pulled_at`` column is no longer written or read either (pull times live in
``image_pulls`` since migration 0004; the column stays so replicas of an older version keep
working during a rolling upgrade).
"""

from __future__ import annotations

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
)

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
    Column("last_pulled_at", Double),  # unused since 0004: see image_pulls
    UniqueConstraint("repository_id", "digest", name="uq_image_digest"),
    Index("ix_images_subject", "repository_id", "subject"),
    # a repository's images in push order (ListImages, DescribeImages, the web page, both
    # directions) without a sort, and its count and size from the index alone
    Index("ix_images_repository_seq", "repository_id", "id", "size", "pushed_at"),
)

# each image's lastRecordedPullTime, apart from the wide images rows (manifests are stored
# inline): recording the pulls of thousands of images rewrites a few short pages, not every page
# of the images table, so reads keep their cached and memory-mapped pages
image_pulls = Table(
    "image_pulls",
    metadata,
    Column("repository_id", Integer, nullable=False),
    Column("digest", String(140), nullable=False),
    Column("last_pulled_at", Double, nullable=False),
    PrimaryKeyConstraint("repository_id", "digest"),
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

# the blobs each image keeps alive (garbage collection's marks): filled at image insert,
# backfilled from the stored manifests when an older data dir first gets the table
image_blobs = Table(
    "image_blobs",
    metadata,
    Column("repository_id", Integer, nullable=False),
    Column("image", String(140), nullable=False),
    Column("blob", String(140), nullable=False),
    PrimaryKeyConstraint("repository_id", "image", "blob"),
    Index("ix_image_blobs_blob", "blob"),
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
    # last, where the migration that added it put it: the last part's time; NULL: none since
    # created_at
    Column("updated_at", Double),
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
