"""Garbage collection: ``image_blobs`` (the blobs each image keeps alive), backfilled from the
stored manifests, and ``upload_sessions.updated_at`` (upload expiry).

Revision ID: 0002
Revises: 0001

Idempotent for databases that got both from ``create_all`` before migrations began (a table
or column already there is kept, and an ``image_blobs`` already there is not backfilled).
"""

from __future__ import annotations

from typing import Any

from alembic import op
from sqlalchemy import (
    Column,
    Double,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    inspect,
    select,
    table,
)

from openecr.domain.manifest import stored_references

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

metadata = MetaData()
image_blobs = Table(
    "image_blobs",
    metadata,
    Column("repository_id", Integer, nullable=False),
    Column("image", String(140), nullable=False),
    Column("blob", String(140), nullable=False),
    PrimaryKeyConstraint("repository_id", "image", "blob"),
    Index("ix_image_blobs_blob", "blob"),
)


def upgrade() -> None:
    conn = op.get_bind()
    inspector = inspect(conn)
    existing = set(inspector.get_table_names())
    if "image_blobs" not in existing:
        image_blobs.create(conn)
        rows: Any = conn.execute(
            select(
                Column("repository_id"),
                Column("digest"),
                Column("manifest"),
                Column("media_type"),
            ).select_from(table("images"))
        )
        for repo_id, digest, manifest, media_type in rows.all():
            refs = stored_references(bytes(manifest), media_type, digest)
            if refs:
                conn.execute(
                    image_blobs.insert(),
                    [{"repository_id": repo_id, "image": digest, "blob": ref} for ref in refs],
                )
    columns = {c["name"] for c in inspector.get_columns("upload_sessions")}
    if "updated_at" not in columns:
        op.add_column("upload_sessions", Column("updated_at", Double))
