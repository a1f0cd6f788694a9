"""The metadata stores the contract suite runs against: one test run per entry of ``STORES``.

A backend joins with one more ``pytest.param``: a factory that returns a new, empty store.
PostgreSQL gets a new database per test in the session's private cluster (``postgres_url``);
it starts a process, so its runs are marked slow.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from openecr.backends.memory_metadata import MemoryMetadataStore
from openecr.backends.sql import SqlMetadataStore
from openecr.ports.metadata import MetadataStore

StoreFactory = Callable[[pytest.FixtureRequest, Path], MetadataStore]


def memory_store(_request: pytest.FixtureRequest, _tmp_path: Path) -> MetadataStore:
    return MemoryMetadataStore()


def sqlite_store(_request: pytest.FixtureRequest, tmp_path: Path) -> MetadataStore:
    return SqlMetadataStore(f"sqlite:///{tmp_path / 'metadata.db'}")


def postgres_store(request: pytest.FixtureRequest, _tmp_path: Path) -> MetadataStore:
    return SqlMetadataStore(request.getfixturevalue("postgres_url"))


STORES = [
    pytest.param(memory_store, id="memory"),
    pytest.param(sqlite_store, id="sqlite"),
    pytest.param(postgres_store, id="postgresql", marks=pytest.mark.slow),
]


@pytest.fixture(params=STORES)
def metadata_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MetadataStore]:
    """A new, empty store, closed after the test."""
    factory: StoreFactory = request.param
    store = factory(request, tmp_path)
    try:
        yield store
    finally:
        store.close()
