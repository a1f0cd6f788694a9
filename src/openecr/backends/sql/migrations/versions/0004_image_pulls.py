"""Pull times in a table of their own (``image_pulls``), moved from ``images.last_pulled_at``.

Revision ID: 0004
Revises: 0003

Recording the pulls of many images rewrote the wide ``images`` rows (their manifests are inline)
and so most pages of the table; ``image_pulls`` rows are short. The old column is kept, no longer
read or written, so replicas of an older version keep working during a rolling upgrade.
Idempotent: a table already there is kept and not filled again.
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import (
    Column,
    Double,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    inspect,
    select,
    table,
)

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

metadata = MetaData()
image_pulls = Table(
    "image_pulls",
    metadata,
    Column("repository_id", Integer, nullable=False),
    Column("digest", String(140), nullable=False),
    Column("last_pulled_at", Double, nullable=False),
    PrimaryKeyConstraint("repository_id", "digest"),
)


def upgrade() -> None:
    conn = op.get_bind()
    if "image_pulls" in set(inspect(conn).get_table_names()):
        return
    image_pulls.create(conn)
    old = table("images", Column("repository_id"), Column("digest"), Column("last_pulled_at"))
    conn.execute(
        image_pulls.insert().from_select(
            ["repository_id", "digest", "last_pulled_at"],
            select(old.c.repository_id, old.c.digest, old.c.last_pulled_at).where(
                old.c.last_pulled_at.is_not(None)
            ),
        )
    )


def downgrade() -> None:
    op.execute(
        "UPDATE images SET last_pulled_at = (SELECT p.last_pulled_at FROM image_pulls p"
        " WHERE p.repository_id = images.repository_id AND p.digest = images.digest)"
        " WHERE EXISTS (SELECT 1 FROM image_pulls p"
        " WHERE p.repository_id = images.repository_id AND p.digest = images.digest)"
    )
    op.drop_table("image_pulls")
