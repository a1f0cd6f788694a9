"""Opaque pagination tokens: a base64url JSON key that says where the next page starts."""

from __future__ import annotations

import binascii
import json
from typing import TypeVar

from openecr.domain import b64url
from openecr.errors import InvalidParameter

K = TypeVar("K", str, int)

MAX_INT_KEY = 2**63 - 1  # integer keys are database row ids: signed 64-bit


def encode_token(key: str | int, scope: str = "") -> str:
    """A token resuming after ``key``; ``scope`` names what is paged, so that a token of one
    listing is refused by another."""
    doc: dict[str, str | int] = {"after": key}
    if scope:
        doc["in"] = scope
    raw = json.dumps(doc, separators=(",", ":")).encode()
    return b64url.encode(raw)


def decode_token(token: str, kind: type[K], scope: str = "") -> K:
    """The key inside ``token``; raises InvalidParameter for anything this server did not issue
    for ``scope``."""
    try:
        doc = json.loads(b64url.decode(token))
        value = doc["after"] if doc.get("in", "") == scope else None
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError, binascii.Error):
        value = None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise InvalidParameter.constraint("nextToken", "Invalid NextToken")
    if isinstance(value, int) and not 0 <= value <= MAX_INT_KEY:
        raise InvalidParameter.constraint("nextToken", "Invalid NextToken")
    return value
