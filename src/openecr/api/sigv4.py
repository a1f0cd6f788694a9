"""AWS Signature Version 4 verification for the ECR JSON API.

The canonical request, string to sign and signature come from botocore's own signer
(:class:`botocore.auth.SigV4Auth`), the code every Python client signs with: the request is
rebuilt from what arrived (method, URL, the headers the client signed, the body) and signed
again with the stored secret; the two signatures are compared in constant time.

Checks, in order, with AWS's error types and (where known) its messages:

* no ``Authorization`` header: ``MissingAuthenticationTokenException``;
* an unparsable header, a credential without five elements, no date, ``host`` not signed:
  ``IncompleteSignatureException``;
* a credential scoped to another date, an unknown region (one botocore does not know ECR in,
  other than the default region), another service or terminator, a timestamp more than
  15 minutes away, an ``x-amz-content-sha256`` that is not the body's hash, a wrong signature:
  ``InvalidSignatureException``;
* an unknown access key: ``UnrecognizedClientException``.

The signature is computed with the request's own credential scope: a request signed for any
known region verifies, and :func:`request_region` tells which region it acts in.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.compat import HTTPHeaders
from botocore.credentials import Credentials

from openecr.api.regions import is_known
from openecr.errors import (
    AuthError,
    IncompleteSignature,
    InvalidSignature,
    MissingAuthenticationToken,
    UnrecognizedClient,
)

log = logging.getLogger("openecr.auth")

ALGORITHM = "AWS4-HMAC-SHA256"
TERMINATOR = "aws4_request"
SIGV4_TIMESTAMP = "%Y%m%dT%H%M%SZ"
MAX_SKEW = timedelta(minutes=15)

MISSING_TOKEN = "Missing Authentication Token"
UNKNOWN_KEY = "The security token included in the request is invalid."
MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)
CONTENT_SHA_MISMATCH = (
    "The provided 'x-amz-content-sha256' header does not match what was computed."
)
HOST_NOT_SIGNED = "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."

_TIMESTAMP = re.compile(r"\d{8}T\d{6}Z")
_SEPARATORS = re.compile(r"[\s,]+")


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class SignedRequestHeader:
    """The parts of ``Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=...,
    Signature=...`` and the request timestamp they are bound to."""

    access_key: str
    date: str  # YYYYMMDD of the credential scope
    region: str
    service: str
    terminator: str
    signed_headers: tuple[str, ...]
    signature: str
    timestamp: str  # the request's time, YYYYMMDDTHHMMSSZ


def _timestamp(headers: Mapping[str, str]) -> str | None:
    """The request time in SigV4's basic ISO-8601 form: ``X-Amz-Date``, else ``Date``."""
    amz_date = headers.get("x-amz-date", "").strip()
    if amz_date:
        if not _TIMESTAMP.fullmatch(amz_date) or _parse_timestamp(amz_date) is None:
            raise IncompleteSignature(
                f"Date must be in ISO-8601 'basic format'. Got '{amz_date}'. "
                "See http://en.wikipedia.org/wiki/ISO_8601"
            )
        return amz_date
    date = headers.get("date", "").strip()
    if not date:
        return None
    try:
        parsed = parsedate_to_datetime(date)
    except (TypeError, ValueError, IndexError):
        raise IncompleteSignature(
            f"Date must be in ISO-8601 'basic format'. Got '{date}'. "
            "See http://en.wikipedia.org/wiki/ISO_8601"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).strftime(SIGV4_TIMESTAMP)


def _parse_timestamp(value: str) -> datetime | None:
    try:
        return datetime.strptime(value, SIGV4_TIMESTAMP).replace(tzinfo=UTC)
    except ValueError:
        return None


def parse_authorization(header: str, headers: Mapping[str, str]) -> SignedRequestHeader:
    """Split an ``Authorization`` header the way AWS's front end does; raise
    :class:`IncompleteSignature` with AWS's wording when a part is missing."""
    algorithm, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    for piece in _SEPARATORS.split(rest.strip()):
        if not piece:
            continue
        key, eq, value = piece.partition("=")
        if not eq:
            raise IncompleteSignature(
                f"'{piece}' not a valid key=value pair (missing equal-sign) in "
                f"Authorization header: '{header}'."
            )
        params[key] = value
    timestamp = _timestamp(headers)
    missing = [
        f"Authorization header requires '{name}' parameter."
        for name in ("Credential", "Signature", "SignedHeaders")
        if not params.get(name)
    ]
    if timestamp is None:
        missing.append(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
        )
    if missing:
        raise IncompleteSignature(" ".join([*missing, f"Authorization={header}"]))
    assert timestamp is not None
    if algorithm != ALGORITHM:
        raise IncompleteSignature(
            f"Unsupported AWS 'algorithm': '{algorithm}'. The only supported algorithm is "
            f"'{ALGORITHM}'."
        )
    credential = params["Credential"]
    parts = credential.split("/")
    if len(parts) != 5 or not all(parts):
        raise IncompleteSignature(
            "Credential must have exactly 5 slash-delimited elements, e.g. "
            f"keyid/date/region/service/term, got '{credential}'"
        )
    signed = tuple(name.strip().lower() for name in params["SignedHeaders"].split(";"))
    if "host" not in signed:
        raise IncompleteSignature(HOST_NOT_SIGNED)
    access_key, date, region, service, terminator = parts
    return SignedRequestHeader(
        access_key, date, region, service, terminator, signed, params["Signature"], timestamp
    )


def _bad_region(region: str) -> str:
    return f"Credential should be scoped to a valid region, not '{region}'."


_CREDENTIAL = re.compile(r"Credential=[^/,\s]*/[^/,\s]*/([^/,\s]*)/")


def request_region(headers: Mapping[str, str], default_region: str) -> str:
    """The region an ECR API request acts in: its SigV4 credential scope's (boto3 and the aws
    CLI always sign, whether or not the server checks signatures), else ``default_region``
    (no or an unparsable ``Authorization``). Raises InvalidSignature for a region botocore
    does not know ECR in."""
    match = _CREDENTIAL.search(headers.get("authorization", ""))
    if match is None or not match.group(1):
        return default_region
    region = match.group(1)
    if not is_known(region, default_region):
        raise InvalidSignature(_bad_region(region))
    return region


class _Verifier(SigV4Auth):
    """botocore's signer, signing exactly the headers the client listed.

    botocore, as a client, never signs hop-by-hop headers or ``User-Agent``; a server must
    accept whatever ``SignedHeaders`` names, so the rebuilt request holds only those headers
    and all of them are signed.
    """

    def headers_to_sign(self, request: AWSRequest) -> HTTPHeaders:
        header_map = HTTPHeaders()
        for name, value in request.headers.items():
            header_map[name.lower()] = value
        return header_map


class SigV4Authenticator:
    """An :data:`openecr.api.http.Authenticator` checking AWS Signature Version 4.

    ``keys`` maps an access key id to its ``(secret access key, principal ARN)``; a request
    signed with a key is made by that principal, in its account. Calling it returns the
    principal ARN.
    """

    def __init__(
        self,
        keys: Mapping[str, tuple[str, str]],
        *,
        region: str,
        service: str = "ecr",
        clock: Callable[[], datetime] = _utcnow,
        max_skew: timedelta = MAX_SKEW,
    ) -> None:
        self._keys = dict(keys)
        self.region = region
        self.service = service
        self.clock = clock
        self.max_skew = max_skew

    def __call__(
        self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes
    ) -> str:
        try:
            return self._authenticate(method, path, query, headers, body)
        except AuthError:
            raise
        except Exception:  # a malformed request must never become a 500
            log.warning("signature check failed unexpectedly", exc_info=True)
            raise InvalidSignature(MISMATCH) from None

    def _authenticate(
        self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes
    ) -> str:
        header = headers.get("authorization", "").strip()
        if not header:
            raise MissingAuthenticationToken(MISSING_TOKEN)
        auth = parse_authorization(header, headers)
        self._check_scope(auth)
        self._check_time(auth.timestamp)
        try:
            secret, principal = self._keys[auth.access_key]
        except KeyError:
            raise UnrecognizedClient(UNKNOWN_KEY) from None
        declared = headers.get("x-amz-content-sha256")
        if declared is not None and not hmac.compare_digest(
            declared.strip().lower().encode(), hashlib.sha256(body).hexdigest().encode()
        ):
            raise InvalidSignature(CONTENT_SHA_MISMATCH)
        expected = self._signature(auth, secret, method, path, query, headers, body)
        if not hmac.compare_digest(expected.encode(), auth.signature.encode(errors="replace")):
            raise InvalidSignature(MISMATCH)
        return principal

    def _check_scope(self, auth: SignedRequestHeader) -> None:
        if auth.date != auth.timestamp[:8]:
            raise InvalidSignature(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
                f"from HTTP: '{auth.date}' != '{auth.timestamp[:8]}', from '{auth.timestamp}'."
            )
        if not is_known(auth.region, self.region):
            raise InvalidSignature(_bad_region(auth.region))
        if auth.service != self.service:
            raise InvalidSignature(
                f"Credential should be scoped to correct service: '{self.service}'."
            )
        if auth.terminator != TERMINATOR:
            raise InvalidSignature(
                f"Credential should be scoped with a valid terminator: '{TERMINATOR}', "
                f"not '{auth.terminator}'."
            )

    def _check_time(self, timestamp: str) -> None:
        when = _parse_timestamp(timestamp)
        if when is None:  # _timestamp() only yields valid ones; kept for safety
            raise IncompleteSignature(
                f"Date must be in ISO-8601 'basic format'. Got '{timestamp}'."
            )
        now = self.clock().astimezone(UTC)
        earliest, latest = now - self.max_skew, now + self.max_skew
        minutes = int(self.max_skew.total_seconds() // 60)
        if when < earliest:
            raise InvalidSignature(
                f"Signature expired: {timestamp} is now earlier than "
                f"{earliest.strftime(SIGV4_TIMESTAMP)} "
                f"({now.strftime(SIGV4_TIMESTAMP)} - {minutes} min.)"
            )
        if when > latest:
            raise InvalidSignature(
                f"Signature not yet current: {timestamp} is still later than "
                f"{latest.strftime(SIGV4_TIMESTAMP)} "
                f"({now.strftime(SIGV4_TIMESTAMP)} + {minutes} min.)"
            )

    def _signature(
        self,
        auth: SignedRequestHeader,
        secret: str,
        method: str,
        path: str,
        query: str,
        headers: Mapping[str, str],
        body: bytes,
    ) -> str:
        signed: dict[str, str] = {}
        for name in auth.signed_headers:
            if name not in headers:  # the client signed a header that did not arrive
                raise InvalidSignature(MISMATCH)
            signed[name] = headers[name]
        # The path arrives decoded; botocore re-encodes it as the client did. The URL's host is
        # a placeholder: the signed Host header is what enters the canonical request.
        url = f"http://localhost{quote(path, safe='/~')}"
        if query:
            url = f"{url}?{query}"
        request = AWSRequest(method=method, url=url, headers=signed, data=body)
        request.context["timestamp"] = auth.timestamp
        signer = _Verifier(Credentials(auth.access_key, secret), self.service, auth.region)
        canonical: str = signer.canonical_request(request)
        string_to_sign: str = signer.string_to_sign(request, canonical)
        signature: Any = signer.signature(string_to_sign, request)
        log.debug("canonical request:\n%s\nstring to sign:\n%s", canonical, string_to_sign)
        return str(signature)
