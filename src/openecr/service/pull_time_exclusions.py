"""Pull time update exclusions: IAM principals whose pulls do not update an image's last
recorded pull time (registry documents of kind ``pull-time-exclusion``, keyed by ARN)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from openecr.domain.registries import account_of
from openecr.errors import ExclusionAlreadyExists, ExclusionNotFound, LimitExceeded
from openecr.ports.metadata import MetadataStore
from openecr.service.common import Clock, utcnow
from openecr.service.paging import decode_token, encode_token

KIND = "pull-time-exclusion"
MAX_EXCLUSIONS = 1000  # per registry
PAGE = 100  # the most one ListPullTimeUpdateExclusions page holds (the model's list maximum)
# an assumed-role session: arn:aws:sts::<account>:assumed-role/<role name>/<session>
_ASSUMED_ROLE = re.compile(r"arn:(aws[a-z-]*):sts::([0-9]{12}):assumed-role/([^/]+)/.+")
_ROLE = re.compile(r"arn:(aws[a-z-]*):iam::([0-9]{12}):role/(?:.*/)?([^/]+)")


@dataclass(frozen=True, slots=True)
class Exclusion:
    principal_arn: str
    created_at: float  # epoch seconds


class PullTimeExclusionService:
    def __init__(self, meta: MetadataStore, clock: Clock = utcnow) -> None:
        self.meta = meta
        self.clock = clock

    def register(self, registry_id: str, principal_arn: str) -> Exclusion:
        """Add a principal; raises ExclusionAlreadyExists, LimitExceeded."""
        exclusion = Exclusion(principal_arn, float(int(self.clock().timestamp())))
        with self.meta.write() as tx:
            if tx.get_document(registry_id, KIND, principal_arn) is not None:
                raise ExclusionAlreadyExists(principal_arn, account_of(registry_id))
            if len(tx.list_documents(registry_id, KIND)) >= MAX_EXCLUSIONS:
                raise LimitExceeded(
                    f"The registry with id '{account_of(registry_id)}' already has the maximum of "
                    f"{MAX_EXCLUSIONS} pull time update exclusions"
                )
            body = json.dumps({"createdAt": exclusion.created_at})
            tx.put_document(registry_id, KIND, principal_arn, body)
        return exclusion

    def deregister(self, registry_id: str, principal_arn: str) -> None:
        """Remove a principal; raises ExclusionNotFound."""
        with self.meta.write() as tx:
            if not tx.delete_document(registry_id, KIND, principal_arn):
                raise ExclusionNotFound(principal_arn, account_of(registry_id))

    def list(
        self, registry_id: str, token: str | None, max_results: int | None
    ) -> tuple[list[str], str | None]:
        """Excluded principal ARNs in byte order, at most ``max_results`` (and 100) a page."""
        after = decode_token(token, str, "pull-time-exclusions") if token else None
        with self.meta.read() as tx:
            keys = [key for key, _ in tx.list_documents(registry_id, KIND)]
        if after is not None:
            keys = [key for key in keys if key > after]
        limit = min(max_results or PAGE, PAGE)
        page = keys[:limit]
        more = len(keys) > limit
        return page, encode_token(page[-1], "pull-time-exclusions") if more else None

    def is_excluded(self, registry_id: str, principal_arn: str) -> bool:
        """Whether pulls by ``principal_arn`` leave pull times alone: the ARN is registered, or
        it is an assumed-role session of a registered role (of any path)."""
        with self.meta.read() as tx:
            if tx.get_document(registry_id, KIND, principal_arn) is not None:
                return True
            session = _ASSUMED_ROLE.fullmatch(principal_arn)
            if session is None:
                return False
            for key, _ in tx.list_documents(registry_id, KIND):
                role = _ROLE.fullmatch(key)
                if role is not None and role.groups() == session.groups():
                    return True
        return False
