"""The image scanning operations: configurations, StartImageScan, DescribeImageScanFindings.

DescribeImages' ``imageScanStatus`` and ``imageScanFindingsSummary`` come from the scanning
service's annotator on ``ImageService`` (see :func:`scan_details`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from openecr.domain.model import ImageId, ScanSummary
from openecr.domain.osv import Finding
from openecr.domain.registries import account_of
from openecr.service.scanning import RegistryConfiguration, Rule, Scan

if TYPE_CHECKING:
    from openecr.api.ecr.operations import Call

Doc = dict[str, Any]


def _ts(value: datetime) -> float:
    return float(int(value.timestamp()))


def _image_id(doc: Doc) -> ImageId:
    return ImageId(doc.get("imageDigest"), doc.get("imageTag"))


def _status(status: str, description: str | None) -> Doc:
    doc: Doc = {"status": status}
    if description:
        doc["description"] = description
    return doc


def scan_details(scan: ScanSummary) -> Doc:
    """DescribeImages' scan members of one image."""
    doc: Doc = {"imageScanStatus": _status(scan.status, scan.description)}
    if scan.completed_at is not None:
        summary: Doc = {
            "imageScanCompletedAt": _ts(scan.completed_at),
            "findingSeverityCounts": dict(scan.severity_counts),
        }
        if scan.source_updated_at is not None:
            summary["vulnerabilitySourceUpdatedAt"] = _ts(scan.source_updated_at)
        doc["imageScanFindingsSummary"] = summary
    return doc


def put_image_scanning_configuration(call: Call) -> Doc:
    p = call.params
    name = p["repositoryName"]
    scan_on_push = bool(p["imageScanningConfiguration"].get("scanOnPush", False))
    repo = call.registry.scanning.put_repository_configuration(
        call.registry_id(name), name, scan_on_push
    )
    return {
        "registryId": account_of(repo.registry_id),
        "repositoryName": repo.name,
        "imageScanningConfiguration": {"scanOnPush": repo.scan_on_push},
    }


def _filters_doc(filters: tuple[str, ...]) -> list[Doc]:
    return [{"filter": f, "filterType": "WILDCARD"} for f in filters]


def _config_doc(config: RegistryConfiguration) -> Doc:
    return {
        "scanType": config.scan_type,
        "rules": [
            {"scanFrequency": r.frequency, "repositoryFilters": _filters_doc(r.filters)}
            for r in config.rules
        ],
    }


def put_registry_scanning_configuration(call: Call) -> Doc:
    p = call.params
    rules = [
        Rule(r["scanFrequency"], tuple(f["filter"] for f in r["repositoryFilters"]))
        for r in p.get("rules") or ()
    ]
    config = call.registry.scanning.put_registry_configuration(
        call.registry_id(), p.get("scanType", "BASIC"), rules
    )
    return {"registryScanningConfiguration": _config_doc(config)}


def get_registry_scanning_configuration(call: Call) -> Doc:
    registry_id = call.registry_id()
    config = call.registry.scanning.get_registry_configuration(registry_id)
    return {"registryId": account_of(registry_id), "scanningConfiguration": _config_doc(config)}


def batch_get_repository_scanning_configuration(call: Call) -> Doc:
    registry_id = call.registry_id()
    found, missing = call.registry.scanning.repository_configurations(
        registry_id, call.params["repositoryNames"]
    )
    account = account_of(registry_id)
    return {
        "scanningConfigurations": [
            {
                "repositoryArn": f"arn:aws:ecr:{call.region}:{account}:repository/"
                f"{c.repository.name}",
                "repositoryName": c.repository.name,
                "scanOnPush": c.scan_on_push,
                "scanFrequency": c.frequency,
                "appliedScanFilters": _filters_doc(c.filters),
            }
            for c in found
        ],
        "failures": [
            {
                "repositoryName": name,
                "failureCode": "REPOSITORY_NOT_FOUND",
                "failureReason": "REPOSITORY_NOT_FOUND",
            }
            for name in missing
        ],
    }


def _echo_id(given: Doc, digest: str) -> Doc:
    doc: Doc = {"imageDigest": digest}
    if given.get("imageTag"):
        doc["imageTag"] = given["imageTag"]
    return doc


def start_image_scan(call: Call) -> Doc:
    p = call.params
    name = p["repositoryName"]
    repo, record, scan = call.registry.scanning.start_scan(
        call.registry_id(name), name, _image_id(p["imageId"])
    )
    return {
        "registryId": account_of(repo.registry_id),
        "repositoryName": repo.name,
        "imageId": _echo_id(p["imageId"], record.digest),
        "imageScanStatus": _status(scan.status, scan.description),
    }


def _finding_doc(finding: Finding) -> Doc:
    attributes = [
        {"key": "package_version", "value": finding.package_version},
        {"key": "package_name", "value": finding.package_name},
    ]
    if finding.cvss3_vector:
        attributes.append({"key": "CVSS3_VECTOR", "value": finding.cvss3_vector})
    if finding.cvss3_score is not None:
        attributes.append({"key": "CVSS3_SCORE", "value": str(finding.cvss3_score)})
    doc: Doc = {
        "name": finding.name,
        "uri": finding.uri,
        "severity": finding.severity,
        "attributes": attributes,
    }
    if finding.description:
        doc["description"] = finding.description
    return doc


def _scan_findings(scan: Scan, findings: list[Finding]) -> Doc:
    assert scan.completed_at is not None
    doc: Doc = {
        "imageScanCompletedAt": _ts(scan.completed_at),
        "findingSeverityCounts": dict(scan.counts),
        "findings": [_finding_doc(f) for f in findings],
    }
    if scan.source_updated_at is not None:
        doc["vulnerabilitySourceUpdatedAt"] = _ts(scan.source_updated_at)
    return doc


def describe_image_scan_findings(call: Call) -> Doc:
    p = call.params
    name = p["repositoryName"]
    page = call.registry.scanning.findings(
        call.registry_id(name),
        name,
        _image_id(p["imageId"]),
        p.get("nextToken"),
        p.get("maxResults"),
    )
    doc: Doc = {
        "registryId": account_of(page.repository.registry_id),
        "repositoryName": page.repository.name,
        "imageId": _echo_id(p["imageId"], page.digest),
        "imageScanStatus": _status(page.scan.status, page.scan.description),
    }
    if page.scan.status == "COMPLETE":
        doc["imageScanFindings"] = _scan_findings(page.scan, page.findings)
    if page.next_token:
        doc["nextToken"] = page.next_token
    return doc


SCANNING_OPERATIONS: dict[str, Callable[[Call], Doc]] = {
    "BatchGetRepositoryScanningConfiguration": batch_get_repository_scanning_configuration,
    "DescribeImageScanFindings": describe_image_scan_findings,
    "GetRegistryScanningConfiguration": get_registry_scanning_configuration,
    "PutImageScanningConfiguration": put_image_scanning_configuration,
    "PutRegistryScanningConfiguration": put_registry_scanning_configuration,
    "StartImageScan": start_image_scan,
}
