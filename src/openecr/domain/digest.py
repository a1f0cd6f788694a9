"""Content digests: ``<algorithm>:<hex>``, computed over exact bytes."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

# ECR's "well-formed" digest, quoted verbatim in its failure reasons; matched in full.
ECR_DIGEST_PATTERN = "[a-zA-Z0-9-_+.]+:[a-fA-F0-9]+"
_ECR_DIGEST_RE = re.compile(r"[a-zA-Z0-9\-_+.]+:[a-fA-F0-9]+")

# What openecr can store and verify: the OCI registered algorithms with their exact lengths.
_STORABLE_RE = re.compile(r"(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})")


def is_well_formed(value: str) -> bool:
    """True when ``value`` matches ECR's digest regex in full (``sha256:ABC`` is well-formed)."""
    return _ECR_DIGEST_RE.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class Digest:
    """A verifiable digest: a registered algorithm and a lower-case hex value of its length."""

    algorithm: str
    hex: str

    @classmethod
    def parse(cls, value: str) -> Digest:
        """Parse ``sha256:<64 hex>`` or ``sha512:<128 hex>``; raise ``ValueError`` otherwise."""
        if _STORABLE_RE.fullmatch(value) is None:
            raise ValueError(f"invalid digest {value!r}")
        algorithm, _, hexpart = value.partition(":")
        return cls(algorithm, hexpart)

    @classmethod
    def try_parse(cls, value: str) -> Digest | None:
        try:
            return cls.parse(value)
        except ValueError:
            return None

    @classmethod
    def of(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        """The digest of ``data`` with ``algorithm``."""
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    def hasher(self) -> hashlib._Hash:
        """A fresh hash object of this digest's algorithm."""
        return hashlib.new(self.algorithm)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"
