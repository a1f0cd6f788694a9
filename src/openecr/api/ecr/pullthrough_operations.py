"""The ECR operations of pull-through cache rules."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from openecr.domain.pullthrough import PullThroughRule
from openecr.domain.registries import account_of
from openecr.service.pullthrough import RuleSpec

if TYPE_CHECKING:  # operations imports this module at its end: no import back at run time
    from openecr.api.ecr.operations import Call

Doc = dict[str, Any]


def _rule(registry_id: str, rule: PullThroughRule, *, updated: bool = True) -> Doc:
    doc: Doc = {
        "ecrRepositoryPrefix": rule.prefix,
        "upstreamRegistryUrl": rule.upstream_url,
        "createdAt": rule.created_at,
        "registryId": account_of(registry_id),
    }
    if updated:
        doc["updatedAt"] = rule.updated_at
    for member, value in (
        ("upstreamRegistry", rule.upstream_registry),
        ("credentialArn", rule.credential_arn),
        ("customRoleArn", rule.custom_role_arn),
        ("upstreamRepositoryPrefix", rule.upstream_prefix),
    ):
        if value:
            doc[member] = value
    return doc


def create_pull_through_cache_rule(call: Call) -> Doc:
    p = call.params
    registry_id = call.registry_id()
    spec = RuleSpec(
        upstream_url=p["upstreamRegistryUrl"],
        upstream_registry=p.get("upstreamRegistry"),
        credential_arn=p.get("credentialArn"),
        custom_role_arn=p.get("customRoleArn"),
        upstream_prefix=p.get("upstreamRepositoryPrefix"),
    )
    made = call.registry.pull_through.create(registry_id, p["ecrRepositoryPrefix"], spec)
    return _rule(registry_id, made, updated=False)


def describe_pull_through_cache_rules(call: Call) -> Doc:
    p = call.params
    registry_id = call.registry_id()
    found, token = call.registry.pull_through.describe(
        registry_id, p.get("ecrRepositoryPrefixes"), p.get("nextToken"), p.get("maxResults")
    )
    doc: Doc = {"pullThroughCacheRules": [_rule(registry_id, r) for r in found]}
    if token:
        doc["nextToken"] = token
    return doc


def update_pull_through_cache_rule(call: Call) -> Doc:
    p = call.params
    registry_id = call.registry_id()
    rule = call.registry.pull_through.update(
        registry_id, p["ecrRepositoryPrefix"], p.get("credentialArn"), p.get("customRoleArn")
    )
    doc = _rule(registry_id, rule)
    for member in ("createdAt", "upstreamRegistryUrl", "upstreamRegistry"):
        doc.pop(member, None)  # UpdatePullThroughCacheRule's output has no such members
    return doc


def delete_pull_through_cache_rule(call: Call) -> Doc:
    registry_id = call.registry_id()
    deleted = call.registry.pull_through.delete(registry_id, call.params["ecrRepositoryPrefix"])
    doc = _rule(registry_id, deleted, updated=False)
    doc.pop("upstreamRegistry", None)  # DeletePullThroughCacheRule's output has no such member
    return doc


def validate_pull_through_cache_rule(call: Call) -> Doc:
    registry_id = call.registry_id()
    result = call.registry.pull_through.validate(registry_id, call.params["ecrRepositoryPrefix"])
    doc = _rule(registry_id, result.rule, updated=False)
    for member in ("createdAt", "upstreamRegistry"):
        doc.pop(member, None)  # ValidatePullThroughCacheRule's output has no such members
    doc["isValid"] = result.valid
    if result.failure:
        doc["failure"] = result.failure
    return doc


PULLTHROUGH_OPERATIONS: dict[str, Callable[[Call], Doc]] = {
    "CreatePullThroughCacheRule": create_pull_through_cache_rule,
    "DeletePullThroughCacheRule": delete_pull_through_cache_rule,
    "DescribePullThroughCacheRules": describe_pull_through_cache_rules,
    "UpdatePullThroughCacheRule": update_pull_through_cache_rule,
    "ValidatePullThroughCacheRule": validate_pull_through_cache_rule,
}
