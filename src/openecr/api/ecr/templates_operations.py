"""The ECR operations of repository creation templates and pull time update exclusions."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from openecr.domain.creation_templates import CreationTemplate
from openecr.domain.model import ExclusionFilter, TagMutability
from openecr.domain.registries import account_of
from openecr.service.creation_templates import TemplateSpec

if TYPE_CHECKING:  # operations imports this module at its end: no import back at run time
    from openecr.api.ecr.operations import Call

Doc = dict[str, Any]


def _spec(p: Doc) -> TemplateSpec:
    encryption = p.get("encryptionConfiguration")
    filters = p.get("imageTagMutabilityExclusionFilters")
    mutability = p.get("imageTagMutability")
    tags = p.get("resourceTags")
    return TemplateSpec(
        applied_for=p.get("appliedFor"),
        description=p.get("description"),
        encryption=(encryption["encryptionType"], encryption.get("kmsKey")) if encryption else None,
        resource_tags=[(t["Key"], t["Value"]) for t in tags] if tags is not None else None,
        tag_mutability=TagMutability(mutability) if mutability else None,
        exclusion_filters=(
            [ExclusionFilter(f["filter"], f["filterType"]) for f in filters]
            if filters is not None
            else None
        ),
        repository_policy=p.get("repositoryPolicy"),
        lifecycle_policy=p.get("lifecyclePolicy"),
        custom_role_arn=p.get("customRoleArn"),
    )


def _template(t: CreationTemplate) -> Doc:
    encryption: Doc = {"encryptionType": t.encryption_type}
    if t.kms_key:
        encryption["kmsKey"] = t.kms_key
    doc: Doc = {
        "prefix": t.prefix,
        "appliedFor": [a.value for a in t.applied_for],
        "encryptionConfiguration": encryption,
        "resourceTags": [{"Key": k, "Value": v} for k, v in t.resource_tags],
        "imageTagMutability": t.tag_mutability.value,
        "createdAt": t.created_at,
        "updatedAt": t.updated_at,
    }
    if t.exclusion_filters:
        doc["imageTagMutabilityExclusionFilters"] = [
            {"filterType": f.filter_type, "filter": f.filter} for f in t.exclusion_filters
        ]
    for member, value in (
        ("description", t.description),
        ("repositoryPolicy", t.repository_policy),
        ("lifecyclePolicy", t.lifecycle_policy),
        ("customRoleArn", t.custom_role_arn),
    ):
        if value:
            doc[member] = value
    return doc


def create_repository_creation_template(call: Call) -> Doc:
    registry_id = call.registry_id()
    made = call.registry.templates.create(registry_id, call.params["prefix"], _spec(call.params))
    return {"registryId": account_of(registry_id), "repositoryCreationTemplate": _template(made)}


def update_repository_creation_template(call: Call) -> Doc:
    registry_id = call.registry_id()
    updated = call.registry.templates.update(registry_id, call.params["prefix"], _spec(call.params))
    return {"registryId": account_of(registry_id), "repositoryCreationTemplate": _template(updated)}


def delete_repository_creation_template(call: Call) -> Doc:
    registry_id = call.registry_id()
    deleted = call.registry.templates.delete(registry_id, call.params["prefix"])
    return {"registryId": account_of(registry_id), "repositoryCreationTemplate": _template(deleted)}


def describe_repository_creation_templates(call: Call) -> Doc:
    p = call.params
    registry_id = call.registry_id()
    found, token = call.registry.templates.describe(
        registry_id, p.get("prefixes"), p.get("nextToken"), p.get("maxResults")
    )
    doc: Doc = {
        "registryId": account_of(registry_id),
        "repositoryCreationTemplates": [_template(t) for t in found],
    }
    if token:
        doc["nextToken"] = token
    return doc


def register_pull_time_update_exclusion(call: Call) -> Doc:
    made = call.registry.exclusions.register(call.registry_id(), call.params["principalArn"])
    return {"principalArn": made.principal_arn, "createdAt": made.created_at}


def deregister_pull_time_update_exclusion(call: Call) -> Doc:
    arn = call.params["principalArn"]
    call.registry.exclusions.deregister(call.registry_id(), arn)
    return {"principalArn": arn}


def list_pull_time_update_exclusions(call: Call) -> Doc:
    p = call.params
    arns, token = call.registry.exclusions.list(
        call.registry_id(), p.get("nextToken"), p.get("maxResults")
    )
    doc: Doc = {"pullTimeUpdateExclusions": arns}
    if token:
        doc["nextToken"] = token
    return doc


TEMPLATES_OPERATIONS: dict[str, Callable[[Call], Doc]] = {
    "CreateRepositoryCreationTemplate": create_repository_creation_template,
    "DeleteRepositoryCreationTemplate": delete_repository_creation_template,
    "DeregisterPullTimeUpdateExclusion": deregister_pull_time_update_exclusion,
    "DescribeRepositoryCreationTemplates": describe_repository_creation_templates,
    "ListPullTimeUpdateExclusions": list_pull_time_update_exclusions,
    "RegisterPullTimeUpdateExclusion": register_pull_time_update_exclusion,
    "UpdateRepositoryCreationTemplate": update_repository_creation_template,
}
