"""Repository and registry policies: storing them (validated) and deciding requests by them.

A repository policy is the repository document ``repository-policy`` ``{"text": ...}`` (the
form repository creation templates give a created repository); the registry policy is the
registry document ``registry-policy`` (key ``policy``) ``{"text": ...}``.

Decisions (:meth:`PolicyService.decide`), as docs/policies.md describes them: an explicit Deny
in an applicable policy refuses; otherwise a principal of the owning account is allowed (there
are no IAM identity policies here), and a principal of another account is allowed only where an
applicable policy allows it. Applicable: the repository's policy for a request on an existing
repository, and the registry policy for every action under REGISTRY_POLICY_SCOPE ``V2`` or
for :data:`~openecr.domain.iam_policy.V1_REGISTRY_ACTIONS` under ``V1``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from openecr.domain.iam_policy import (
    V1_REGISTRY_ACTIONS,
    AccessRequest,
    Decision,
    Policy,
    PolicyInvalid,
    UnsupportedPolicy,
    parse_policy,
    principal_account,
    request_context,
)
from openecr.domain.model import Repository
from openecr.domain.registries import account_of
from openecr.errors import PolicyTextInvalid, RegistryPolicyNotFound, RepositoryPolicyNotFound
from openecr.ports.metadata import MetadataStore, Transaction
from openecr.service.account_settings import REGISTRY_POLICY_SCOPE, setting_value
from openecr.service.common import require_repository

log = logging.getLogger("openecr.policies")

REPOSITORY_POLICY = "repository-policy"  # repository document {"text": <policy>}
REGISTRY_POLICY = "registry-policy"  # registry document, key "policy": {"text": <policy>}
REGISTRY_POLICY_KEY = "policy"


def check_policy(text: str, what: str) -> Policy:
    """The parsed policy; raises PolicyTextInvalid (``what``: repository or registry)."""
    try:
        return parse_policy(text)
    except UnsupportedPolicy as error:
        raise PolicyTextInvalid(what, str(error), unsupported=True) from None
    except PolicyInvalid as error:
        log.info("refused a %s policy: %s", what, error)
        raise PolicyTextInvalid(what, str(error)) from None


def _text(body: str | None) -> str | None:
    """The policy text of a stored document: ``{"text": ...}`` (or, as a second process or an
    older version may have written it, the policy document itself)."""
    if body is None:
        return None
    doc = json.loads(body)
    if isinstance(doc, dict) and isinstance(doc.get("text"), str):
        return str(doc["text"])
    return body


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of one request: ``allowed``, and if not whether an explicit Deny said so."""

    allowed: bool
    explicit_deny: bool = False


ALLOWED = Verdict(True)


class PolicyService:
    def __init__(self, meta: MetadataStore) -> None:
        self.meta = meta

    # --- repository policies ---------------------------------------------------------------

    def set_repository_policy(
        self, registry_id: str, name: str, text: str, *, lockout: AccessRequest | None = None
    ) -> Repository:
        """Store ``text`` as the repository's policy; raises RepositoryNotFound, then
        PolicyTextInvalid. With ``lockout`` (the caller's own SetRepositoryPolicy request, when
        ``force`` is not given), a policy that explicitly denies that request is refused."""
        with self.meta.write() as tx:
            repo = require_repository(tx, registry_id, name)
            policy = check_policy(text, "repository")
            if lockout is not None and policy.evaluate(lockout) is Decision.DENY:
                raise PolicyTextInvalid(
                    "repository",
                    "The policy would deny the caller ecr:SetRepositoryPolicy on this "
                    "repository: set force to apply it anyway",
                    unsupported=True,
                )
            tx.put_repository_document(repo.id, REPOSITORY_POLICY, json.dumps({"text": text}))
            return repo

    def get_repository_policy(self, registry_id: str, name: str) -> tuple[Repository, str]:
        """Raises RepositoryNotFound, RepositoryPolicyNotFound."""
        with self.meta.read() as tx:
            repo = require_repository(tx, registry_id, name)
            text = _text(tx.get_repository_document(repo.id, REPOSITORY_POLICY))
        if text is None:
            raise RepositoryPolicyNotFound(name, account_of(registry_id))
        return repo, text

    def delete_repository_policy(self, registry_id: str, name: str) -> tuple[Repository, str]:
        """Remove the policy and return what it was; raises RepositoryNotFound,
        RepositoryPolicyNotFound."""
        with self.meta.write() as tx:
            repo = require_repository(tx, registry_id, name)
            text = _text(tx.get_repository_document(repo.id, REPOSITORY_POLICY))
            if text is None:
                raise RepositoryPolicyNotFound(name, account_of(registry_id))
            tx.delete_repository_document(repo.id, REPOSITORY_POLICY)
        return repo, text

    # --- the registry policy ---------------------------------------------------------------

    def put_registry_policy(self, registry_id: str, text: str) -> str:
        """Store the registry policy; raises PolicyTextInvalid. Under REGISTRY_POLICY_SCOPE V1
        its Allow statements may grant only ReplicateImage, CreateRepository and
        BatchImportUpstreamImage."""
        policy = check_policy(text, "registry")
        with self.meta.write() as tx:
            scope = setting_value(tx, registry_id, REGISTRY_POLICY_SCOPE)
            if scope == "V1" and not policy.grants_only(V1_REGISTRY_ACTIONS):
                log.info("refused a registry policy: it grants more than scope V1 covers")
                raise PolicyTextInvalid("registry", "scope V1 covers fewer actions")
            tx.put_document(
                registry_id, REGISTRY_POLICY, REGISTRY_POLICY_KEY, json.dumps({"text": text})
            )
        return text

    def get_registry_policy(self, registry_id: str) -> str:
        """Raises RegistryPolicyNotFound."""
        with self.meta.read() as tx:
            text = _text(tx.get_document(registry_id, REGISTRY_POLICY, REGISTRY_POLICY_KEY))
        if text is None:
            raise RegistryPolicyNotFound(account_of(registry_id))
        return text

    def delete_registry_policy(self, registry_id: str) -> str:
        """Remove the registry policy and return it; raises RegistryPolicyNotFound."""
        with self.meta.write() as tx:
            text = _text(tx.get_document(registry_id, REGISTRY_POLICY, REGISTRY_POLICY_KEY))
            if text is None:
                raise RegistryPolicyNotFound(account_of(registry_id))
            tx.delete_document(registry_id, REGISTRY_POLICY, REGISTRY_POLICY_KEY)
        return text

    # --- decisions -------------------------------------------------------------------------

    def _policies(
        self, tx: Transaction, registry_id: str, repository: str | None, action: str
    ) -> list[Policy]:
        """The stored policies that apply to ``action`` (``ecr:X``) on ``repository``."""
        found: list[Policy] = []
        registry_text = _text(tx.get_document(registry_id, REGISTRY_POLICY, REGISTRY_POLICY_KEY))
        if registry_text is not None:
            scope = setting_value(tx, registry_id, REGISTRY_POLICY_SCOPE)
            if scope == "V2" or action in V1_REGISTRY_ACTIONS:
                found.append(_stored(registry_text))
        if repository is not None and repository != "*":
            repo = tx.get_repository(registry_id, repository)
            if repo is not None:
                text = _text(tx.get_repository_document(repo.id, REPOSITORY_POLICY))
                if text is not None:
                    found.append(_stored(text))
        return found

    def decide(
        self,
        registry_id: str,
        principal: str,
        action: str,
        resource: str,
        repository: str | None,
        *,
        region: str,
        secure: bool = False,
    ) -> Verdict:
        """Whether ``principal`` (an IAM or STS ARN) may perform ``action`` (``ecr:X``) on
        ``resource`` (the repository ARN; ``repository`` its name, None or ``*`` for registry
        actions) in the registry ``registry_id``. One read transaction."""
        owner = account_of(registry_id)
        account = principal_account(principal)
        context = request_context(principal, account, region, owner, secure)
        request = AccessRequest(principal, account, action, resource, context)
        with self.meta.read() as tx:
            policies = self._policies(tx, registry_id, repository, action)
        if not policies:  # the common case: nothing stored, nothing to evaluate
            return ALLOWED if account == owner else Verdict(False)
        decisions = [p.evaluate(request) for p in policies]
        if Decision.DENY in decisions:
            return Verdict(False, explicit_deny=True)
        return Verdict(account == owner or Decision.ALLOW in decisions)

    def registry_allows(
        self, registry_id: str, principal_arn: str, actions: Iterable[str], *, region: str
    ) -> bool:
        """Whether the registry ``registry_id`` (a store key: account, or ``<account>.<region>``)
        lets ``principal_arn`` perform every one of ``actions`` (``ecr:ReplicateImage``,
        ``ecr:CreateRepository``, ...) on its repositories by its registry policy alone: for
        cross-account replication (the destination registry must allow the source account's
        principal). A principal of the registry's own account is always allowed unless denied;
        an explicit Deny refuses. ``region`` is the registry's region (for conditions)."""
        owner = account_of(registry_id)
        resource = f"arn:aws:ecr:{region}:{owner}:repository/*"
        return all(
            self.decide(registry_id, principal_arn, a, resource, None, region=region).allowed
            for a in actions
        )


def _stored(text: str) -> Policy:
    """A stored policy, parsed (cached); one that no longer parses (stored by an older version
    with laxer checks) allows nothing and denies nothing."""
    try:
        return parse_policy(text)
    except PolicyInvalid:
        log.warning("a stored policy does not parse and is ignored: %.200s", text)
        return Policy(None, ())
