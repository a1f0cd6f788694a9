"""The regions a request may name: every region botocore knows ECR in, in any partition, and
the configured default region."""

from __future__ import annotations

from functools import lru_cache

from botocore.loaders import Loader
from botocore.regions import EndpointResolver

ECR_ENDPOINT_PREFIX = "api.ecr"  # the ECR model's endpointPrefix: its key in endpoints.json


@lru_cache(maxsize=1)
def _botocore_regions() -> frozenset[str]:
    """What ``botocore.session.get_session().get_available_regions("ecr", partition)`` gives
    over every partition, read without a session (which keeps ~7 MB of RSS after it is
    dropped, this ~5 MB; the names are copied so that none pins the parsed data). Read on the
    first request that names a region other than the default one (~0.1 s, once), so that a
    server whose clients use only the default region never holds it."""
    resolver = EndpointResolver(Loader().load_data("endpoints"))
    found: set[str] = set()
    for partition in resolver.get_available_partitions():
        found.update(resolver.get_available_endpoints(ECR_ENDPOINT_PREFIX, partition))
    return frozenset(name.encode().decode() for name in found)


def is_known(region: str, default_region: str) -> bool:
    """Whether ``region`` is one botocore knows (or the default region, whatever its name)."""
    return region == default_region or region in _botocore_regions()
