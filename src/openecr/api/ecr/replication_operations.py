"""ECR operations on replication: PutReplicationConfiguration, DescribeRegistry (the registry's
id and replication configuration) and DescribeImageReplicationStatus."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from openecr.api import regions
from openecr.domain.model import ImageId
from openecr.domain.registries import account_of
from openecr.domain.replication import ReplicationConfiguration
from openecr.errors import InvalidParameter

if TYPE_CHECKING:  # operations.py imports this module at its end: no import back at run time
    from openecr.api.ecr.operations import Call, Doc


def put_replication_configuration(call: Call) -> Doc:
    configuration = ReplicationConfiguration.from_doc(call.params["replicationConfiguration"])
    default = call.registry.settings.region
    for rule in configuration.rules:
        for destination in rule.destinations:
            if not regions.is_known(destination.region, default):
                raise InvalidParameter.constraint(
                    "replicationConfiguration",
                    f"Invalid destination region '{destination.region}'",
                )
    stored = call.registry.replication.put_configuration(call.registry_id(), configuration)
    return {"replicationConfiguration": stored.to_doc()}


def describe_registry(call: Call) -> Doc:
    registry_id = call.registry_id()
    configuration = call.registry.replication.configuration(registry_id)
    return {
        "registryId": account_of(registry_id),
        "replicationConfiguration": configuration.to_doc(),
    }


def describe_image_replication_status(call: Call) -> Doc:
    p = call.params
    name = p["repositoryName"]
    wanted = p["imageId"]
    report = call.registry.replication.image_status(
        call.registry_id(name), name, ImageId(wanted.get("imageDigest"), wanted.get("imageTag"))
    )
    image_id: Doc = {"imageDigest": report.digest}
    if report.tag is not None:
        image_id["imageTag"] = report.tag
    return {
        "repositoryName": report.repository.name,
        "imageId": image_id,
        "replicationStatuses": [s.to_doc() for s in report.statuses],
    }


REPLICATION_OPERATIONS: dict[str, Callable[[Call], Doc]] = {
    "DescribeImageReplicationStatus": describe_image_replication_status,
    "DescribeRegistry": describe_registry,
    "PutReplicationConfiguration": put_replication_configuration,
}
