"""The lifecycle policy operations: Put/Get/DeleteLifecyclePolicy and the preview pair."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from openecr.domain.model import ImageId
from openecr.domain.registries import account_of
from openecr.service.lifecycle import Preview, PreviewResult, StoredPolicy

if TYPE_CHECKING:
    from openecr.api.ecr.operations import Call

Doc = dict[str, Any]


def _ts(value: datetime) -> float:
    return float(int(value.timestamp()))


def _policy_doc(stored: StoredPolicy, *, evaluated: bool) -> Doc:
    doc: Doc = {
        "registryId": account_of(stored.repository.registry_id),
        "repositoryName": stored.repository.name,
        "lifecyclePolicyText": stored.text,
    }
    if evaluated and stored.last_evaluated_at is not None:
        doc["lastEvaluatedAt"] = _ts(stored.last_evaluated_at)
    return doc


def put_lifecycle_policy(call: Call) -> Doc:
    name = call.params["repositoryName"]
    stored = call.registry.lifecycle.put_policy(
        call.registry_id(name), name, call.params["lifecyclePolicyText"]
    )
    return _policy_doc(stored, evaluated=False)


def get_lifecycle_policy(call: Call) -> Doc:
    name = call.params["repositoryName"]
    return _policy_doc(
        call.registry.lifecycle.get_policy(call.registry_id(name), name), evaluated=True
    )


def delete_lifecycle_policy(call: Call) -> Doc:
    name = call.params["repositoryName"]
    return _policy_doc(
        call.registry.lifecycle.delete_policy(call.registry_id(name), name), evaluated=True
    )


def _preview_head(preview: Preview) -> Doc:
    return {
        "registryId": account_of(preview.repository.registry_id),
        "repositoryName": preview.repository.name,
        "lifecyclePolicyText": preview.policy_text,
        "status": preview.status,
    }


def start_lifecycle_policy_preview(call: Call) -> Doc:
    name = call.params["repositoryName"]
    preview = call.registry.lifecycle.start_preview(
        call.registry_id(name), name, call.params.get("lifecyclePolicyText")
    )
    return _preview_head(preview)


def _result_doc(result: PreviewResult) -> Doc:
    action: Doc = {"type": result.action}
    if result.target_storage_class:
        action["targetStorageClass"] = result.target_storage_class
    doc: Doc = {
        "imageDigest": result.digest,
        "imagePushedAt": _ts(result.pushed_at),
        "action": action,
        "appliedRulePriority": result.priority,
        "storageClass": result.storage_class,
    }
    if result.tags:
        doc["imageTags"] = list(result.tags)
    return doc


def get_lifecycle_policy_preview(call: Call) -> Doc:
    p = call.params
    name = p["repositoryName"]
    ids = [ImageId(i.get("imageDigest"), i.get("imageTag")) for i in p.get("imageIds") or ()]
    preview, page, token = call.registry.lifecycle.get_preview(
        call.registry_id(name),
        name,
        ids or None,
        str((p.get("filter") or {}).get("tagStatus", "ANY")),
        p.get("nextToken"),
        p.get("maxResults"),
    )
    doc = _preview_head(preview)
    doc["previewResults"] = [_result_doc(r) for r in page]
    summary: Doc = {"expiringImageTotalCount": preview.expiring}
    transitioning = preview.transitioning
    if transitioning:
        summary["transitioningImageTotalCounts"] = [
            {"targetStorageClass": target, "imageTotalCount": count}
            for target, count in sorted(transitioning.items())
        ]
    doc["summary"] = summary
    if token:
        doc["nextToken"] = token
    return doc


LIFECYCLE_OPERATIONS: dict[str, Callable[[Call], Doc]] = {
    "DeleteLifecyclePolicy": delete_lifecycle_policy,
    "GetLifecyclePolicy": get_lifecycle_policy,
    "GetLifecyclePolicyPreview": get_lifecycle_policy_preview,
    "PutLifecyclePolicy": put_lifecycle_policy,
    "StartLifecyclePolicyPreview": start_lifecycle_policy_preview,
}
