"""The regions a request may name: every region botocore knows ECR in, in any partition, and
the configured default region."""

from __future__ import annotations

from functools import lru_cache

import botocore.session


@lru_cache(maxsize=1)
def _botocore_regions() -> frozenset[str]:
    session = botocore.session.get_session()
    found: set[str] = set()
    for partition in session.get_available_partitions():
        found.update(session.get_available_regions("ecr", partition_name=partition))
    return frozenset(found)


def load() -> None:
    """Read botocore's endpoint data now rather than on the first request that names a region."""
    _botocore_regions()


def is_known(region: str, default_region: str) -> bool:
    """Whether ``region`` is one botocore knows (or the default region, whatever its name)."""
    return region == default_region or region in _botocore_regions()
