"""Who calls ``/v2`` and which registry (account and region) they address.

* The account: a ``Host`` of the form ``<12 digits>.dkr.ecr.<region>.<anything>`` (or one that
  fits the configured registry host template) names it, as on ECR; otherwise the token's
  account when authenticating, else the default account.
* The region: the ``<region>`` of such a Host when it is one botocore knows; otherwise the
  token's region when authenticating, else the default region.
* Without ``--credentials`` anyone may do anything and ``Authorization`` is not looked at.
* With it, every request needs ``Authorization: Basic base64(AWS:<password>)`` where the
  password comes from GetAuthorizationToken; anything else is 401 with a Basic challenge.
  A token acts in its own region only (GetAuthorizationToken in a region issues it for that
  region's registry) and carries the principal that asked for it: another account's registry
  answers 403 ``DENIED`` unless its policies allow that principal the request's ECR action
  (:meth:`openecr.api.oci.common.Context.permit`).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from openecr.api.regions import is_known
from openecr.domain.iam_policy import denial_message, root_arn
from openecr.domain.records import quick_init
from openecr.errors import AccessDenied, MissingAuthenticationToken, UnrecognizedClient
from openecr.service.registry import Registry
from openecr.service.tokens import TokenClaims

ECR_HOST = re.compile(r"([0-9]{12})\.dkr\.ecr\.([a-z0-9-]+)\..+")
SERVICE = "ecr.amazonaws.com"


@quick_init
@dataclass(frozen=True, slots=True)
class Identity:
    account: str  # the registry the request addresses: its account
    caller: str | None  # the account the token belongs to; None when not authenticating
    region: str  # the registry the request addresses: its region
    caller_region: str | None = None  # the region the token is for; None when not authenticating
    principal: str | None = None  # the token's principal ARN; None when not authenticating


def _template_pattern(template: str | None) -> re.Pattern[str] | None:
    """A matcher for the configured ``--registry-host`` template, if it names the account."""
    if not template or "{account}" not in template:
        return None
    pattern = re.escape(template.lower())
    pattern = pattern.replace(re.escape("{account}"), "(?P<account>[0-9]{12})", 1)
    pattern = pattern.replace(re.escape("{account}"), "[0-9]{12}")
    pattern = pattern.replace(re.escape("{region}"), "(?P<region>[a-z0-9-]+)", 1)
    pattern = pattern.replace(re.escape("{region}"), "[a-z0-9-]+")
    return re.compile(pattern)


def _hostname(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):  # [v6]:port
        return host.partition("]")[0] + "]"
    return host.rpartition(":")[0] if host.count(":") == 1 else host


class Authenticator:
    """Resolves the :class:`Identity` of each request; built once per app."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.settings = registry.settings
        self._template = _template_pattern(registry.settings.registry_host)

    def host_account(self, host: str) -> str | None:
        """The account a ``Host`` header names, if it names one."""
        return self.host_registry(host)[0]

    def host_registry(self, host: str) -> tuple[str | None, str | None]:
        """The account and the (known) region a ``Host`` header names, each if it names one."""
        name = _hostname(host)
        match = ECR_HOST.fullmatch(name)
        if match is not None:
            return match.group(1), self._region(match.group(2))
        if self._template is not None:
            found = self._template.fullmatch(name)
            if found is not None:
                region = found.groupdict().get("region")
                return found.group("account"), None if region is None else self._region(region)
        return None, None

    def _region(self, region: str) -> str | None:
        return region if is_known(region, self.settings.region) else None

    def identify(self, host: str, authorization: str | None) -> Identity:
        """Raises MissingAuthenticationToken / UnrecognizedClient (401) when authenticating
        and the credentials are missing, malformed, forged or expired."""
        account, region = self.host_registry(host)
        if not self.settings.authenticate:
            return Identity(
                account or self.settings.default_account, None, region or self.settings.region
            )
        claims = self.verify(authorization)
        caller, caller_region = claims.account, claims.region or self.settings.region
        return Identity(
            account or caller, caller, region or caller_region, caller_region, claims.principal
        )

    def verify(self, authorization: str | None) -> TokenClaims:
        """What the password of a ``Basic AWS:<password>`` header was issued for."""
        if not authorization:
            raise MissingAuthenticationToken(
                "Authentication is required: log in with user AWS and the password from "
                "GetAuthorizationToken"
            )
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() != "basic":
            raise UnrecognizedClient("Only Basic authentication is supported")
        try:
            user, sep, password = (
                base64.b64decode(value.strip(), validate=True).decode().partition(":")
            )
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise UnrecognizedClient("The Basic credentials are not valid base64") from None
        if not sep or user != "AWS":
            raise UnrecognizedClient("The user name must be AWS")
        try:
            return self.registry.tokens.claims(password)
        except AccessDenied as error:
            raise UnrecognizedClient(error.message) from None

    def challenge(self, scheme: str, host: str) -> str:
        """The ``WWW-Authenticate`` value of a 401, as ECR words it."""
        return f'Basic realm="{scheme}://{host}/",service="{SERVICE}"'

    def resource_arn(self, identity: Identity, name: str) -> str:
        return f"arn:aws:ecr:{identity.region}:{identity.account}:repository/{name}"

    def denied(
        self, identity: Identity, name: str, action: str, *, explicit: bool = False
    ) -> AccessDenied:
        principal = identity.principal or root_arn(identity.caller or identity.account)
        return AccessDenied(
            denial_message(
                principal, f"ecr:{action}", self.resource_arn(identity, name), explicit=explicit
            )
        )
