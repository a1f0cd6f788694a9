"""MetadataStore on SQLAlchemy Core: SQLite (WAL) by default, PostgreSQL with the same queries.

``schema`` holds the tables, ``prepared`` the hot reads compiled once, ``rows`` the row
conversions, ``transaction`` one transaction's queries and ``store`` the engines.
"""

from __future__ import annotations

from openecr.backends.sql.store import SqlMetadataStore
from openecr.backends.sql.transaction import SqlTransaction

__all__ = ["SqlMetadataStore", "SqlTransaction"]
