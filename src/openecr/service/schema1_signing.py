"""Signing Docker v2 schema 1 manifests as libtrust's "pretty JWS"
(``application/vnd.docker.distribution.manifest.v1+prettyjws``) with the registry's EC P-256
key, as docker/distribution does.

The pure side (recovering the signed payload, the digest of a signed manifest) stays in
:mod:`openecr.domain.conversion`; this module holds the key and the cryptography.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from openecr.domain import b64url


def _compact(doc: Any) -> str:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def _is_json_object(raw: bytes) -> bool:
    try:
        return isinstance(json.loads(raw), dict)
    except (UnicodeDecodeError, ValueError):
        return False


def _libtrust_key_id(public: ec.EllipticCurvePublicKey) -> str:
    """libtrust's key id: the first 240 bits of sha256(DER public key) in base32, in 12 groups
    of four characters joined by colons."""
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    text = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode("ascii").rstrip("=")
    return ":".join(text[i : i + 4] for i in range(0, len(text), 4))


class Schema1Signer:
    """Signs schema 1 manifests with one EC P-256 key (ES256), as docker/distribution does with
    its libtrust key."""

    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        if not isinstance(key.curve, ec.SECP256R1):
            raise ValueError("schema 1 signing needs an EC P-256 key")
        self.key = key
        numbers = key.public_key().public_numbers()
        self.key_id = _libtrust_key_id(key.public_key())
        # libtrust's JWK, keys sorted as Go marshals a map
        self.jwk: dict[str, str] = {
            "crv": "P-256",
            "kid": self.key_id,
            "kty": "EC",
            "x": b64url.encode(numbers.x.to_bytes(32, "big")),
            "y": b64url.encode(numbers.y.to_bytes(32, "big")),
        }

    @classmethod
    def generate(cls) -> Schema1Signer:
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def from_pem(cls, pem: bytes) -> Schema1Signer:
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("schema 1 signing needs an EC P-256 key")
        return cls(key)

    def to_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def sign(self, payload: bytes, now: datetime) -> bytes | None:
        """``payload`` (a JSON object) with a ``signatures`` member appended, libtrust's
        ``PrettySignature``: the protected header records where the payload's closing brace
        starts (``formatLength``) and what follows it (``formatTail``), so a verifier can cut
        the signatures back out. None if ``payload`` is not a JSON object."""
        if not _is_json_object(payload):
            return None
        body = payload.rstrip()
        if not body.endswith(b"}"):
            return None
        cut = len(body[:-1].rstrip())
        if payload[cut - 1 : cut] == b",":
            return None
        indent = ""
        if payload.startswith(b"{\n"):
            quote = payload.find(b'"', 1)
            if quote > 0:
                indent = payload[2:quote].decode()
        protected = b64url.encode(
            _compact(
                {
                    "formatLength": cut,
                    "formatTail": b64url.encode(payload[cut:]),
                    "time": now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                }
            ).encode()
        )
        signing_input = f"{protected}.{b64url.encode(payload)}".encode("ascii")
        der = self.key.sign(signing_input, ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        signature = {
            "header": {"jwk": self.jwk, "alg": "ES256"},
            "signature": b64url.encode(r.to_bytes(32, "big") + s.to_bytes(32, "big")),
            "protected": protected,
        }
        if indent:
            listed = json.dumps([signature], indent=indent).replace("\n", "\n" + indent)
            tail = f',\n{indent}"signatures": {listed}\n}}'
        else:
            tail = f',"signatures":{_compact([signature])}}}'
        return payload[:cut] + tail.encode()
