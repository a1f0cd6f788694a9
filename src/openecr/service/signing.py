"""Signing configuration (Put/Get/DeleteSigningConfiguration, one registry document) and
DescribeImageSigningStatus, reported from the signatures stored as referrers of the image.

openecr never signs images itself: a rule's profile reads COMPLETE once a notation or cosign
signature of the image is stored (pushed with the image as its ``subject``), else FAILED.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from openecr.domain.model import FailureCode, ImageFailure, ImageId, Repository
from openecr.domain.registries import account_of
from openecr.errors import ImageNotFound, InvalidParameter, SigningConfigurationNotFound
from openecr.ports.metadata import MetadataStore, Transaction
from openecr.service.common import require_repository
from openecr.service.images import MALFORMED, check_image_id, resolve_id
from openecr.service.referrers import signatures_of

KIND = "signing-configuration"
FILTER_TYPE = "WILDCARD_MATCH"
NO_SIGNATURE_CODE = "SignatureNotFound"
NO_SIGNATURE_REASON = (
    "No signature of the image is stored: openecr does not sign images, push a notation or "
    "cosign signature with the image as its subject"
)


@dataclass(frozen=True, slots=True)
class SigningRule:
    """Sign images of repositories matching any of ``filters`` (none: every repository)."""

    signing_profile_arn: str
    filters: tuple[str, ...] = ()

    def matches(self, repository: str) -> bool:
        """Whether the rule covers ``repository``: ``*`` matches any run of characters and a
        filter must match the whole name."""
        return not self.filters or any(_wildcard(f).fullmatch(repository) for f in self.filters)


def _wildcard(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")))


@dataclass(frozen=True, slots=True)
class SigningStatus:
    """One profile's status; ``signing_profile_arn`` is None for signatures no rule asked for."""

    signing_profile_arn: str | None
    status: str  # IN_PROGRESS | COMPLETE | FAILED
    failure_code: str | None = None
    failure_reason: str | None = None


@dataclass(frozen=True, slots=True)
class SigningReport:
    repository: Repository
    digest: str
    tag: str | None
    statuses: list[SigningStatus]


def rules_to_document(rules: Sequence[SigningRule]) -> dict[str, Any]:
    """The model's ``SigningConfiguration`` for ``rules`` (stored and answered as is)."""
    docs = []
    for rule in rules:
        doc: dict[str, Any] = {"signingProfileArn": rule.signing_profile_arn}
        if rule.filters:
            doc["repositoryFilters"] = [
                {"filter": f, "filterType": FILTER_TYPE} for f in rule.filters
            ]
        docs.append(doc)
    return {"rules": docs}


def rules_from_document(doc: dict[str, Any]) -> list[SigningRule]:
    """The rules of a (validated) ``SigningConfiguration``."""
    return [
        SigningRule(
            rule["signingProfileArn"],
            tuple(f["filter"] for f in rule.get("repositoryFilters") or ()),
        )
        for rule in doc["rules"]
    ]


def _configuration(tx: Transaction, registry_id: str) -> list[SigningRule] | None:
    body = tx.get_document(registry_id, KIND, "")
    return None if body is None else rules_from_document(json.loads(body))


def statuses(rules: Sequence[SigningRule], repository: str, signed: bool) -> list[SigningStatus]:
    """One status per distinct profile of the rules covering ``repository`` (COMPLETE when a
    signature is stored, else FAILED); with no such rule, one COMPLETE status without a profile
    when a signature is stored, else none."""
    profiles = list(dict.fromkeys(r.signing_profile_arn for r in rules if r.matches(repository)))
    if not profiles:
        return [SigningStatus(None, "COMPLETE")] if signed else []
    if signed:
        return [SigningStatus(p, "COMPLETE") for p in profiles]
    return [SigningStatus(p, "FAILED", NO_SIGNATURE_CODE, NO_SIGNATURE_REASON) for p in profiles]


class SigningService:
    def __init__(self, meta: MetadataStore) -> None:
        self.meta = meta

    def put(self, registry_id: str, rules: Sequence[SigningRule]) -> list[SigningRule]:
        """Create or replace the registry's signing configuration; return it."""
        with self.meta.write() as tx:
            tx.put_document(registry_id, KIND, "", json.dumps(rules_to_document(rules)))
        return list(rules)

    def get(self, registry_id: str) -> list[SigningRule]:
        """The registry's signing rules. Raises SigningConfigurationNotFound."""
        with self.meta.read() as tx:
            rules = _configuration(tx, registry_id)
        if rules is None:
            raise SigningConfigurationNotFound(registry_id)
        return rules

    def delete(self, registry_id: str) -> list[SigningRule]:
        """Remove the registry's signing configuration; return what it was. Raises
        SigningConfigurationNotFound."""
        with self.meta.write() as tx:
            rules = _configuration(tx, registry_id)
            if rules is None:
                raise SigningConfigurationNotFound(registry_id)
            tx.delete_document(registry_id, KIND, "")
        return rules

    def image_status(self, registry_id: str, name: str, image_id: ImageId) -> SigningReport:
        """The signing status of one image (by tag or digest). Raises InvalidParameter (a
        malformed id), RepositoryNotFound, ImageNotFound."""
        failure = check_image_id(image_id)
        if failure is not None and failure.code in MALFORMED:
            raise InvalidParameter(failure.reason)
        with self.meta.read() as tx:
            repo = require_repository(tx, registry_id, name)
            found = resolve_id(tx, repo, image_id)
            if isinstance(found, ImageFailure):
                if found.code is FailureCode.IMAGE_TAG_DOES_NOT_MATCH_DIGEST:
                    raise InvalidParameter(found.reason)
                raise ImageNotFound(
                    f"The image with imageId {{imageDigest:'{image_id.digest}', "
                    f"imageTag:'{image_id.tag}'}} does not exist within the repository "
                    f"with name '{name}' in the registry with id '{account_of(registry_id)}'"
                )
            signed = bool(signatures_of(tx, repo, found.digest))
            rules = _configuration(tx, registry_id) or []
        return SigningReport(repo, found.digest, image_id.tag, statuses(rules, name, signed))
