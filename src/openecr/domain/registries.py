"""A registry is an (account, region) pair, as on AWS; the stores know it by one opaque key.

The key of the default region's registry is the bare account id (so data written before
regions existed needs no migration); any other region's is ``<account>.<region>``. Keys are
built and taken apart here only: whatever reaches a client (``registryId``, ARNs, URIs, error
messages) shows :func:`account_of` the key.
"""

from __future__ import annotations

SEPARATOR = "."  # neither an account id (12 digits) nor a URL path holds it specially


def registry_key(account: str, region: str, default_region: str) -> str:
    """The store's key of ``account``'s registry in ``region``."""
    return account if region == default_region else f"{account}{SEPARATOR}{region}"


def account_of(key: str) -> str:
    """The account id of a registry key (what ``registryId`` shows)."""
    return key.partition(SEPARATOR)[0]


def region_of(key: str, default_region: str) -> str:
    """The region of a registry key."""
    _, sep, region = key.partition(SEPARATOR)
    return region if sep else default_region
