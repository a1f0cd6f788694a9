"""ListImageReferrers: the manifests of a repository whose ``subject`` is an image, with ECR's
filters and pages, from the same referrers index as /v2's referrers API."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from openecr.domain import digest as digests
from openecr.domain.model import ImageRecord, Repository
from openecr.errors import InvalidParameter
from openecr.ports.metadata import MetadataStore, Transaction
from openecr.service.common import require_repository
from openecr.service.images import Referrer, _referrer
from openecr.service.paging import decode_token, encode_token

DEFAULT_PAGE_SIZE = 20  # the model: "returns up to 20 results" without maxResults
TOKEN_SCOPE = "referrers"

# Artifact types of image signatures: notation, cosign's OCI 1.1 signatures, and cosign
# simple-signing payloads (the config type of cosign's signature manifests).
NOTATION_SIGNATURE = "application/vnd.cncf.notary.signature"
COSIGN_SIGNATURE = "application/vnd.dev.cosign.artifact.sig.v1+json"
COSIGN_SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_TYPES = frozenset({NOTATION_SIGNATURE, COSIGN_SIGNATURE, COSIGN_SIMPLE_SIGNING})


def check_subject(subject: str) -> None:
    """Raise InvalidParameter for a subject digest that is not one (ECR's digest regex)."""
    if not digests.is_well_formed(subject):
        raise InvalidParameter.constraint(
            "imageDigest", f"must satisfy regular expression '{digests.ECR_DIGEST_PATTERN}'"
        )


def referrers_of(tx: Transaction, repo: Repository, subject: str) -> list[tuple[int, Referrer]]:
    """(push-order key, descriptor) of every manifest of ``repo`` about ``subject``."""
    records: list[ImageRecord] = tx.images_with_subject(repo.id, subject)
    return [(r.seq, _referrer(r)) for r in records]


def signatures_of(tx: Transaction, repo: Repository, subject: str) -> list[Referrer]:
    """The signature referrers (notation or cosign) of ``subject`` in ``repo``."""
    return [r for _, r in referrers_of(tx, repo, subject) if r.artifact_type in SIGNATURE_TYPES]


@dataclass(frozen=True, slots=True)
class ReferrerPage:
    referrers: list[Referrer]
    next_token: str | None


class ReferrerService:
    def __init__(self, meta: MetadataStore) -> None:
        self.meta = meta

    def list(
        self,
        registry_id: str,
        name: str,
        subject: str,
        artifact_types: Sequence[str] | None,
        artifact_status: str | None,
        token: str | None,
        max_results: int | None,
    ) -> ReferrerPage:
        """Referrers of ``subject`` in push order, only those of ``artifact_types`` when given.
        Every stored image is ACTIVE: an ARCHIVED or ACTIVATING filter lists nothing. An
        unknown subject has no referrers. Raises InvalidParameter (a malformed digest or
        token), RepositoryNotFound."""
        check_subject(subject)
        after = decode_token(token, int, TOKEN_SCOPE) if token else None
        limit = max_results or DEFAULT_PAGE_SIZE
        with self.meta.read() as tx:
            repo = require_repository(tx, registry_id, name)
            found = referrers_of(tx, repo, subject)
        if artifact_status in ("ARCHIVED", "ACTIVATING"):
            return ReferrerPage([], None)
        if artifact_types:
            found = [(seq, r) for seq, r in found if r.artifact_type in artifact_types]
        if after is not None:
            found = [(seq, r) for seq, r in found if seq > after]
        page = found[:limit]
        more = len(found) > limit
        next_token = encode_token(page[-1][0], TOKEN_SCOPE) if more else None
        return ReferrerPage([r for _, r in page], next_token)
