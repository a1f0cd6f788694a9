"""The regions a request may name: every region botocore knows ECR in, in any partition, and
the configured default region."""

from __future__ import annotations

from functools import lru_cache

from botocore.loaders import Loader
from botocore.regions import EndpointResolver

from openecr.api.ecr.validation import service_model


@lru_cache(maxsize=1)
def _botocore_regions() -> frozenset[str]:
    """What ``botocore.session.get_session().get_available_regions("ecr", partition)`` gives
    over every partition, read without a session. Read on the first request that names a
    region other than the default one (~0.1 s, once), not at startup: in a running server it
    leaves ~7 MB of RSS behind (~9 MB through a session; the names are copied so that none
    pins the parsed data), which a server whose clients use only the default region never
    holds."""
    resolver = EndpointResolver(Loader().load_data("endpoints"))
    prefix = service_model().endpoint_prefix  # ECR's key in the endpoint data ("api.ecr")
    found: set[str] = set()
    for partition in resolver.get_available_partitions():
        found.update(resolver.get_available_endpoints(prefix, partition))
    return frozenset(name.encode().decode() for name in found)


def is_known(region: str, default_region: str) -> bool:
    """Whether ``region`` is one botocore knows (or the default region, whatever its name)."""
    return region == default_region or region in _botocore_regions()
