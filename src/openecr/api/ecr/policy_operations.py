"""The policy operations: Set/Get/DeleteRepositoryPolicy and Put/Get/DeleteRegistryPolicy."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from openecr.domain.iam_policy import AccessRequest, request_context
from openecr.domain.model import Repository
from openecr.domain.registries import account_of

if TYPE_CHECKING:
    from openecr.api.ecr.operations import Call

Doc = dict[str, Any]


def _repository_doc(repo: Repository, text: str) -> Doc:
    return {
        "registryId": account_of(repo.registry_id),
        "repositoryName": repo.name,
        "policyText": text,
    }


def _lockout(call: Call, registry_id: str, name: str) -> AccessRequest:
    """The caller's own SetRepositoryPolicy request on the repository, which a new policy must
    not deny unless ``force`` is set."""
    caller = call.caller
    account = account_of(registry_id)
    return AccessRequest(
        caller.arn,
        caller.account,
        "ecr:SetRepositoryPolicy",
        call.resource_arn(account, name),
        request_context(caller.arn, caller.account, call.region, account, caller.scheme == "https"),
    )


def set_repository_policy(call: Call) -> Doc:
    p = call.params
    name = p["repositoryName"]
    registry_id = call.registry_id(name)
    lockout = None if p.get("force") else _lockout(call, registry_id, name)
    text = p["policyText"]
    repo = call.registry.policies.set_repository_policy(registry_id, name, text, lockout=lockout)
    return _repository_doc(repo, text)


def get_repository_policy(call: Call) -> Doc:
    name = call.params["repositoryName"]
    repo, text = call.registry.policies.get_repository_policy(call.registry_id(name), name)
    return _repository_doc(repo, text)


def delete_repository_policy(call: Call) -> Doc:
    name = call.params["repositoryName"]
    repo, text = call.registry.policies.delete_repository_policy(call.registry_id(name), name)
    return _repository_doc(repo, text)


def put_registry_policy(call: Call) -> Doc:
    registry_id = call.registry_id()
    text = call.registry.policies.put_registry_policy(registry_id, call.params["policyText"])
    return {"registryId": account_of(registry_id), "policyText": text}


def get_registry_policy(call: Call) -> Doc:
    registry_id = call.registry_id()
    text = call.registry.policies.get_registry_policy(registry_id)
    return {"registryId": account_of(registry_id), "policyText": text}


def delete_registry_policy(call: Call) -> Doc:
    registry_id = call.registry_id()
    text = call.registry.policies.delete_registry_policy(registry_id)
    return {"registryId": account_of(registry_id), "policyText": text}


POLICY_OPERATIONS: dict[str, Callable[[Call], Doc]] = {
    "DeleteRegistryPolicy": delete_registry_policy,
    "DeleteRepositoryPolicy": delete_repository_policy,
    "GetRegistryPolicy": get_registry_policy,
    "GetRepositoryPolicy": get_repository_policy,
    "PutRegistryPolicy": put_registry_policy,
    "SetRepositoryPolicy": set_repository_policy,
}
