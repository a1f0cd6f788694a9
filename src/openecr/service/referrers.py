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
from openecr.service.images import Referrer, _referrer, image_status
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


@dataclass(frozen=True, slots=True)
class ListedReferrer:
    """A referrer with its push-order key and ECR's status (ACTIVE or ARCHIVED)."""

    seq: int
    referrer: Referrer
    status: str


def referrers_of(tx: Transaction, repo: Repository, subject: str) -> list[ListedReferrer]:
    """Every manifest of ``repo`` about ``subject``, in push order."""
    records: list[ImageRecord] = tx.images_with_subject(repo.id, subject)
    return [ListedReferrer(r.seq, _referrer(r), image_status(r)) for r in records]


def signatures_of(tx: Transaction, repo: Repository, subject: str) -> list[Referrer]:
    """The signature referrers (notation or cosign) of ``subject`` in ``repo``, archived ones
    included."""
    found = referrers_of(tx, repo, subject)
    return [x.referrer for x in found if x.referrer.artifact_type in SIGNATURE_TYPES]


@dataclass(frozen=True, slots=True)
class ReferrerPage:
    referrers: list[ListedReferrer]
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
        """Referrers of ``subject`` in push order: only those of ``artifact_types`` when given,
        of ``artifact_status`` (ACTIVE when None; ANY: all). Restores are immediate, so none is
        ACTIVATING. An unknown subject has no referrers. Raises InvalidParameter (a malformed
        digest or token), RepositoryNotFound."""
        check_subject(subject)
        after = decode_token(token, int, TOKEN_SCOPE) if token else None
        limit = max_results or DEFAULT_PAGE_SIZE
        with self.meta.read() as tx:
            repo = require_repository(tx, registry_id, name)
            found = referrers_of(tx, repo, subject)
        status = artifact_status or "ACTIVE"
        found = [
            x
            for x in found
            if (status == "ANY" or x.status == status)
            and (not artifact_types or x.referrer.artifact_type in artifact_types)
            and (after is None or x.seq > after)
        ]
        page = found[:limit]
        more = len(found) > limit
        return ReferrerPage(page, encode_token(page[-1].seq, TOKEN_SCOPE) if more else None)
