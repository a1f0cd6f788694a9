"""Unpadded URL-safe base64 (RFC 4648 section 5 without ``=``), as JOSE and openecr's tokens
write it."""

from __future__ import annotations

import base64


def encode(data: bytes) -> str:
    """``data`` in unpadded base64url."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def decode(text: str) -> bytes:
    """The bytes of unpadded (or padded) base64url ``text``; raises ValueError (binascii.Error
    included) for text that is not base64 or not ASCII."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
