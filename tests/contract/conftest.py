"""The metadata stores the contract suite runs against: one test run per entry of ``STORES``.

A backend joins with one more ``pytest.param``: a factory that returns a new, empty store
(PostgreSQL: e.g. a fresh database or schema per test from an ``OPENECR_TEST_POSTGRES_URL``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from openecr.backends.memory_metadata import MemoryMetadataStore
from openecr.backends.sql import SqlMetadataStore
from openecr.ports.metadata import MetadataStore

StoreFactory = Callable[[Path], MetadataStore]


def memory_store(_tmp_path: Path) -> MetadataStore:
    return MemoryMetadataStore()


def sqlite_store(tmp_path: Path) -> MetadataStore:
    return SqlMetadataStore(f"sqlite:///{tmp_path / 'metadata.db'}")


STORES = [
    pytest.param(memory_store, id="memory"),
    pytest.param(sqlite_store, id="sqlite"),
]


@pytest.fixture(params=STORES)
def metadata_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MetadataStore]:
    """A new, empty store, closed after the test."""
    factory: StoreFactory = request.param
    store = factory(tmp_path)
    try:
        yield store
    finally:
        store.close()
