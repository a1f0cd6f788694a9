"""ECR operations on registry settings: account settings, the signing
configuration and image signing status, and ListImageReferrers."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from openecr.domain.model import ImageId
from openecr.domain.registries import account_of
from openecr.service.signing import SigningStatus, rules_from_document, rules_to_document

if TYPE_CHECKING:  # operations.py imports this module at its end: no import back at run time
    from openecr.api.ecr.operations import Call, Doc


def get_account_setting(call: Call) -> Doc:
    name = call.params["name"]
    value = call.registry.account_settings.get(call.registry_id(), name)
    return {"name": name, "value": value}


def put_account_setting(call: Call) -> Doc:
    p = call.params
    value = call.registry.account_settings.put(call.registry_id(), p["name"], p["value"])
    return {"name": p["name"], "value": value}


def put_signing_configuration(call: Call) -> Doc:
    configuration = rules_from_document(call.params["signingConfiguration"])
    rules = call.registry.signing.put(call.registry_id(), configuration)
    return {"signingConfiguration": rules_to_document(rules)}


def get_signing_configuration(call: Call) -> Doc:
    registry_id = call.registry_id()
    rules = call.registry.signing.get(registry_id)
    return {"registryId": account_of(registry_id), "signingConfiguration": rules_to_document(rules)}


def delete_signing_configuration(call: Call) -> Doc:
    registry_id = call.registry_id()
    rules = call.registry.signing.delete(registry_id)
    return {"registryId": account_of(registry_id), "signingConfiguration": rules_to_document(rules)}


def _status(status: SigningStatus) -> Doc:
    doc: Doc = {"status": status.status}
    if status.signing_profile_arn is not None:
        doc["signingProfileArn"] = status.signing_profile_arn
    if status.failure_code is not None:
        doc["failureCode"] = status.failure_code
    if status.failure_reason is not None:
        doc["failureReason"] = status.failure_reason
    return doc


def describe_image_signing_status(call: Call) -> Doc:
    p = call.params
    name = p["repositoryName"]
    report = call.registry.signing.image_status(
        call.registry_id(name),
        name,
        ImageId(p["imageId"].get("imageDigest"), p["imageId"].get("imageTag")),
    )
    image_id: Doc = {"imageDigest": report.digest}
    if report.tag is not None:
        image_id["imageTag"] = report.tag
    return {
        "registryId": account_of(report.repository.registry_id),
        "repositoryName": report.repository.name,
        "imageId": image_id,
        "signingStatuses": [_status(s) for s in report.statuses],
    }


def list_image_referrers(call: Call) -> Doc:
    p = call.params
    name = p["repositoryName"]
    wanted = p.get("filter") or {}
    page = call.registry.referrers.list(
        call.registry_id(name),
        name,
        p["subjectId"]["imageDigest"],
        wanted.get("artifactTypes"),
        wanted.get("artifactStatus"),
        p.get("nextToken"),
        p.get("maxResults"),
    )
    referrers = []
    for listed in page.referrers:
        referrer = listed.referrer
        doc: Doc = {
            "digest": referrer.digest,
            "mediaType": referrer.media_type,
            "size": referrer.size,
            "artifactStatus": listed.status,
        }
        if referrer.artifact_type:
            doc["artifactType"] = referrer.artifact_type
        if referrer.annotations:
            doc["annotations"] = dict(referrer.annotations)
        referrers.append(doc)
    result: Doc = {"referrers": referrers}
    if page.next_token:
        result["nextToken"] = page.next_token
    return result


SETTINGS_OPERATIONS: dict[str, Callable[[Call], Doc]] = {
    "DeleteSigningConfiguration": delete_signing_configuration,
    "DescribeImageSigningStatus": describe_image_signing_status,
    "GetAccountSetting": get_account_setting,
    "GetSigningConfiguration": get_signing_configuration,
    "ListImageReferrers": list_image_referrers,
    "PutAccountSetting": put_account_setting,
    "PutSigningConfiguration": put_signing_configuration,
}
