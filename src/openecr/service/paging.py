"""Opaque pagination tokens: a base64url JSON key that says where the next page starts."""

from __future__ import annotations

import base64
import binascii
import json
from typing import TypeVar

from openecr.errors import InvalidParameter

K = TypeVar("K", str, int)


def encode_token(key: str | int) -> str:
    raw = json.dumps({"after": key}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, kind: type[K]) -> K:
    """The key inside ``token``; raises InvalidParameter for anything this server did not issue."""
    try:
        padded = token + "=" * (-len(token) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))["after"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        value = None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise InvalidParameter.constraint("nextToken", "Invalid NextToken")
    return value
