"""Registry passwords (what GetAuthorizationToken hands out) and signed download URLs.

A password is ``oe1.<payload>.<mac>``: a base64url JSON payload (account, region, principal,
expiry) and
an HMAC-SHA256 over it with the server's secret. Like ECR tokens they last 12 hours, and like
them they are for the registry of one region (a password without a region, issued before
regions existed, is for the default region's).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from openecr.domain import b64url
from openecr.domain.iam_policy import root_arn
from openecr.errors import AccessDenied
from openecr.service.common import Clock, utcnow

TOKEN_LIFETIME = timedelta(hours=12)
URL_LIFETIME = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class IssuedToken:
    password: str
    expires_at: datetime

    @property
    def authorization_token(self) -> str:
        """ECR's ``authorizationToken``: base64 of ``AWS:<password>``."""
        return base64.b64encode(f"AWS:{self.password}".encode()).decode()


@dataclass(frozen=True, slots=True)
class TokenClaims:
    account: str
    region: str | None  # None: the default region
    principal: str  # the principal ARN that asked for the token


class TokenService:
    def __init__(self, secret: bytes, clock: Clock = utcnow) -> None:
        self._secret = secret
        self.clock = clock

    def _mac(self, message: str) -> str:
        return b64url.encode(
            hmac.new(
                self._secret, message.encode("utf-8", "surrogatepass"), hashlib.sha256
            ).digest()
        )

    def _matches(self, given: str, message: str) -> bool:
        """Whether ``given`` is the MAC of ``message``, in constant time; any text (non-ASCII
        included, which ``hmac.compare_digest`` refuses as ``str``) is just a mismatch."""
        expected = self._mac(message).encode()
        return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected)

    def issue(
        self, account: str, region: str | None = None, principal: str | None = None
    ) -> IssuedToken:
        """A password for ``account``'s registry in ``region`` (None: the default region),
        carrying the caller's ``principal`` ARN (None: the account's root)."""
        expires = self.clock() + TOKEN_LIFETIME
        claims: dict[str, object] = {"a": account, "e": int(expires.timestamp())}
        if region is not None:
            claims["r"] = region
        if principal is not None:
            claims["p"] = principal
        payload = b64url.encode(json.dumps(claims, separators=(",", ":")).encode())
        return IssuedToken(f"oe1.{payload}.{self._mac(payload)}", expires)

    def verify(self, password: str) -> tuple[str, str | None]:
        """The account and region (None: the default one) a password was issued for; raises
        AccessDenied if forged or expired."""
        claims = self.claims(password)
        return claims.account, claims.region

    def claims(self, password: str) -> TokenClaims:
        """What a password was issued for (a password without a principal, issued before
        principals existed, is the account root's); raises AccessDenied if forged or
        expired."""
        try:
            version, payload, mac = password.split(".")
            data = json.loads(b64url.decode(payload))
            account, expires = str(data["a"]), int(data["e"])
            region = None if data.get("r") is None else str(data["r"])
            principal = str(data.get("p") or root_arn(account))
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
            raise AccessDenied("Your authorization token is invalid.") from None
        if version != "oe1" or not self._matches(mac, payload):
            raise AccessDenied("Your authorization token is invalid.")
        if expires < self.clock().timestamp():
            raise AccessDenied(
                "Your authorization token has expired. Reauthenticate and try again."
            )
        return TokenClaims(account, region, principal)

    def sign_path(self, path: str) -> tuple[int, str]:
        """An expiry and signature that make ``path`` downloadable until then."""
        expires = int((self.clock() + URL_LIFETIME).timestamp())
        return expires, self._mac(f"{path}\n{expires}")

    def check_path(self, path: str, expires: str, signature: str) -> bool:
        try:
            deadline = int(expires)
        except ValueError:
            return False
        fresh = deadline >= self.clock().timestamp()
        return fresh and self._matches(signature, f"{path}\n{deadline}")
