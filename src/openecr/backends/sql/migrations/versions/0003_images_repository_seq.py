"""The web page's index: a repository's images in push order, with their sizes and push times
(``ix_images_repository_seq``), so a page of a 100,000-image repository needs no sort and its
count and size come from the index alone.

Revision ID: 0003
Revises: 0002

Idempotent: an index already there (made by an earlier ``create_all``) is kept.
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import inspect

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    conn = op.get_bind()
    names = {index["name"] for index in inspect(conn).get_indexes("images")}
    if "ix_images_repository_seq" not in names:
        op.create_index(
            "ix_images_repository_seq", "images", ["repository_id", "id", "size", "pushed_at"]
        )


def downgrade() -> None:
    op.drop_index("ix_images_repository_seq", table_name="images")
