"""Image scanning through boto3: configurations, StartImageScan, DescribeImageScanFindings and
DescribeImages' scan members, on images built with real Debian and Alpine package databases,
against the test OSV database (tests/vulnerability_db)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import WaiterError

from conftest import InProcessServer, Server, ServerFactory, client_error, free_port
from scan_images import (
    ALPINE_FINDINGS,
    DATABASE,
    DEBIAN_FINDINGS,
    alpine_layers,
    build_image,
    debian_layers,
    findings_of,
    index_of,
    push,
    unsupported_layers,
)

WAIT = {"Delay": 0.2, "MaxAttempts": 300}


@pytest.fixture(scope="module")
def scanner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server scanning against the test database (its registry's scanning configuration is
    left as it is by these tests: rules are tested on servers of their own)."""
    data = tmp_path_factory.mktemp("scanning") / "data"
    srv = InProcessServer(data, free_port(), ["--vulnerability-db", str(DATABASE)]).start()
    yield srv
    srv.stop()


@pytest.fixture
def client(scanner: Server) -> Any:
    return scanner.client()


@pytest.fixture
def repository(client: Any) -> str:
    name = f"scan/repo-{uuid.uuid4().hex[:10]}"
    client.create_repository(repositoryName=name)
    return name


def _wait(client: Any, repository: str, digest: str) -> dict[str, Any]:
    client.get_waiter("image_scan_complete").wait(
        repositoryName=repository, imageId={"imageDigest": digest}, WaiterConfig=WAIT
    )
    found: dict[str, Any] = client.describe_image_scan_findings(
        repositoryName=repository, imageId={"imageDigest": digest}
    )
    return found


def _wait_for_scan(client: Any, repository: str, digest: str) -> dict[str, Any]:
    """Poll until the image has a scan that is no longer IN_PROGRESS (scan on push)."""
    deadline = time.monotonic() + 60
    while True:
        found: dict[str, Any] = client.describe_image_scan_findings(
            repositoryName=repository, imageId={"imageDigest": digest}
        )
        if found["imageScanStatus"]["status"] != "IN_PROGRESS" or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_a_never_scanned_image_has_no_scan(client: Any, repository: str) -> None:
    digest = push(client, repository, debian_layers(), "v1")
    for image_id, shown in (
        ({"imageDigest": digest}, f"{{imageDigest:'{digest}', imageTag:'null'}}"),
        ({"imageTag": "v1"}, "{imageDigest:'null', imageTag:'v1'}"),
    ):
        code, message, status = client_error(
            client.describe_image_scan_findings, repositoryName=repository, imageId=image_id
        )
        assert (code, status) == ("ScanNotFoundException", 400)
        assert message == (
            f"Image scan does not exist for the image with '{shown}' in the repository with "
            f"name '{repository}' in the registry with id '123456789012'"
        )
    [detail] = client.describe_images(repositoryName=repository)["imageDetails"]
    assert "imageScanStatus" not in detail and "imageScanFindingsSummary" not in detail


def test_debian_image_findings(client: Any, repository: str) -> None:
    digest = push(client, repository, debian_layers(), "bookworm")
    started = client.start_image_scan(repositoryName=repository, imageId={"imageTag": "bookworm"})
    assert started["imageId"] == {"imageDigest": digest, "imageTag": "bookworm"}
    assert started["imageScanStatus"]["status"] == "IN_PROGRESS"
    assert started["registryId"] == "123456789012"
    found = _wait(client, repository, digest)
    assert found["imageScanStatus"] == {
        "status": "COMPLETE",
        "description": "The scan was completed successfully.",
    }
    assert findings_of(found) == DEBIAN_FINDINGS
    scan = found["imageScanFindings"]
    assert scan["findingSeverityCounts"] == {"CRITICAL": 1, "MEDIUM": 1, "LOW": 1, "UNDEFINED": 1}
    # the newest `modified` of the database's records
    assert scan["vulnerabilitySourceUpdatedAt"].year == 2099
    first = scan["findings"][0]
    assert first["uri"] == "https://security-tracker.debian.org/tracker/CVE-2099-1001"
    assert first["description"].startswith("openssl: a test vulnerability")
    attributes = {a["key"]: a["value"] for a in first["attributes"]}
    assert attributes["CVSS3_SCORE"] == "9.8"
    assert attributes["CVSS3_VECTOR"].startswith("CVSS:3.1/AV:N")
    # DescribeImages reports the scan
    [detail] = client.describe_images(repositoryName=repository)["imageDetails"]
    assert detail["imageScanStatus"]["status"] == "COMPLETE"
    summary = detail["imageScanFindingsSummary"]
    assert summary["findingSeverityCounts"] == scan["findingSeverityCounts"]
    assert summary["imageScanCompletedAt"] == scan["imageScanCompletedAt"]
    by_id = client.describe_images(repositoryName=repository, imageIds=[{"imageDigest": digest}])
    assert by_id["imageDetails"][0]["imageScanStatus"]["status"] == "COMPLETE"
    # basic scanning: once per 24 hours
    code, message, _ = client_error(
        client.start_image_scan, repositoryName=repository, imageId={"imageDigest": digest}
    )
    assert (code, message) == (
        "LimitExceededException",
        "The scan quota per image has been exceeded. Wait and try again.",
    )


def test_alpine_image_findings(client: Any, repository: str) -> None:
    digest = push(client, repository, alpine_layers(), "3.19")
    client.start_image_scan(repositoryName=repository, imageId={"imageDigest": digest})
    found = _wait(client, repository, digest)
    assert findings_of(found) == ALPINE_FINDINGS
    assert found["imageScanFindings"]["findingSeverityCounts"] == {"HIGH": 1, "MEDIUM": 1}
    first = found["imageScanFindings"]["findings"][0]
    assert first["uri"] == "https://osv.dev/vulnerability/ALPINE-CVE-2099-2001"


def test_findings_are_paged(client: Any, repository: str) -> None:
    digest = push(client, repository, debian_layers(), "v1")
    client.start_image_scan(repositoryName=repository, imageId={"imageDigest": digest})
    _wait(client, repository, digest)
    seen: list[tuple[str, str, str, str]] = []
    kwargs: dict[str, Any] = {
        "repositoryName": repository,
        "imageId": {"imageDigest": digest},
        "maxResults": 3,
    }
    pages = 0
    while True:
        page = client.describe_image_scan_findings(**kwargs)
        pages += 1
        seen.extend(findings_of(page))
        assert page["imageScanFindings"]["findingSeverityCounts"]["CRITICAL"] == 1  # the total
        if "nextToken" not in page:
            break
        kwargs["nextToken"] = page["nextToken"]
    assert (pages, seen) == (2, DEBIAN_FINDINGS)
    paginator = client.get_paginator("describe_image_scan_findings")
    names = [
        f["name"]
        for p in paginator.paginate(
            repositoryName=repository,
            imageId={"imageDigest": digest},
            PaginationConfig={"PageSize": 1},
        )
        for f in p["imageScanFindings"]["findings"]
    ]
    assert names == [f[0] for f in DEBIAN_FINDINGS]
    code, message, _ = client_error(
        client.describe_image_scan_findings,
        repositoryName=repository,
        imageId={"imageDigest": digest},
        nextToken="bm90IGEgdG9rZW4",
    )
    assert code == "InvalidParameterException" and "nextToken" in message


def test_an_image_without_a_supported_os_is_unsupported(client: Any, repository: str) -> None:
    digest = push(client, repository, unsupported_layers(), "scratch")
    client.start_image_scan(repositoryName=repository, imageId={"imageDigest": digest})
    found = _wait_for_scan(client, repository, digest)
    assert found["imageScanStatus"] == {
        "status": "UNSUPPORTED_IMAGE",
        "description": "UnsupportedImageError: The operating system and/or package manager "
        "are not supported.",
    }
    assert "imageScanFindings" not in found
    [detail] = client.describe_images(repositoryName=repository)["imageDetails"]
    assert detail["imageScanStatus"]["status"] == "UNSUPPORTED_IMAGE"
    assert "imageScanFindingsSummary" not in detail


def test_an_index_is_not_a_scannable_type(client: Any, repository: str) -> None:
    manifest = build_image(client, repository, alpine_layers())
    put = client.put_image(repositoryName=repository, imageManifest=manifest, imageTag="amd64")
    image = put["image"]["imageId"]["imageDigest"]
    index = index_of(client, repository, image, len(manifest.encode()), "multi")
    code, message, _ = client_error(
        client.start_image_scan, repositoryName=repository, imageId={"imageDigest": index}
    )
    assert (code, message) == (
        "UnsupportedImageTypeException",
        "The image is of a type that cannot be scanned.",
    )


def test_unknown_and_archived_images(client: Any, repository: str) -> None:
    missing = "sha256:" + "0" * 64
    for call in (client.start_image_scan, client.describe_image_scan_findings):
        code, message, _ = client_error(
            call, repositoryName=repository, imageId={"imageDigest": missing}
        )
        assert code == "ImageNotFoundException"
        assert message == (
            f"The image with imageId {{imageDigest:'{missing}', imageTag:'null'}} does not "
            f"exist within the repository with name '{repository}' in the registry with id "
            "'123456789012'"
        )
        code, _, _ = client_error(
            call, repositoryName="scan/no-such-repo", imageId={"imageTag": "v1"}
        )
        assert code == "RepositoryNotFoundException"
        code, _, _ = client_error(call, repositoryName=repository, imageId={})
        assert code == "InvalidParameterException"
    digest = push(client, repository, debian_layers(), "old")
    client.update_image_storage_class(
        repositoryName=repository, imageId={"imageDigest": digest}, targetStorageClass="ARCHIVE"
    )
    code, _, _ = client_error(
        client.start_image_scan, repositoryName=repository, imageId={"imageDigest": digest}
    )
    assert code == "ImageArchivedException"


def test_a_deleted_and_pushed_again_image_was_never_scanned(client: Any, repository: str) -> None:
    manifest = build_image(client, repository, unsupported_layers())
    digest = client.put_image(repositoryName=repository, imageManifest=manifest, imageTag="a")[
        "image"
    ]["imageId"]["imageDigest"]
    client.start_image_scan(repositoryName=repository, imageId={"imageDigest": digest})
    _wait_for_scan(client, repository, digest)
    client.batch_delete_image(repositoryName=repository, imageIds=[{"imageDigest": digest}])
    client.put_image(repositoryName=repository, imageManifest=manifest, imageTag="a")
    code, _, _ = client_error(
        client.describe_image_scan_findings,
        repositoryName=repository,
        imageId={"imageDigest": digest},
    )
    assert code == "ScanNotFoundException"
    client.start_image_scan(repositoryName=repository, imageId={"imageDigest": digest})


def test_repository_scan_on_push(client: Any) -> None:
    name = f"scan/push-{uuid.uuid4().hex[:10]}"
    created = client.create_repository(
        repositoryName=name, imageScanningConfiguration={"scanOnPush": True}
    )
    assert created["repository"]["imageScanningConfiguration"] == {"scanOnPush": True}
    digest = push(client, name, debian_layers(), "v1")
    # the scan is recorded before the push answers: waiters can start at once
    found = _wait(client, name, digest)
    assert findings_of(found) == DEBIAN_FINDINGS
    # the push counted: a manual scan within 24 hours is refused
    code, _, _ = client_error(
        client.start_image_scan, repositoryName=name, imageId={"imageDigest": digest}
    )
    assert code == "LimitExceededException"


def test_put_image_scanning_configuration(client: Any, repository: str) -> None:
    put = client.put_image_scanning_configuration(
        repositoryName=repository, imageScanningConfiguration={"scanOnPush": True}
    )
    assert put == {
        "registryId": "123456789012",
        "repositoryName": repository,
        "imageScanningConfiguration": {"scanOnPush": True},
        "ResponseMetadata": put["ResponseMetadata"],
    }
    [repo] = client.describe_repositories(repositoryNames=[repository])["repositories"]
    assert repo["imageScanningConfiguration"] == {"scanOnPush": True}
    digest = push(client, repository, alpine_layers(), "v1")
    assert findings_of(_wait(client, repository, digest)) == ALPINE_FINDINGS
    client.put_image_scanning_configuration(
        repositoryName=repository, imageScanningConfiguration={"scanOnPush": False}
    )
    [config] = client.batch_get_repository_scanning_configuration(repositoryNames=[repository])[
        "scanningConfigurations"
    ]
    assert (config["scanOnPush"], config["scanFrequency"]) == (False, "MANUAL")
    unscanned = push(client, repository, debian_layers(), "v2")
    code, _, _ = client_error(
        client.describe_image_scan_findings,
        repositoryName=repository,
        imageId={"imageDigest": unscanned},
    )
    assert code == "ScanNotFoundException"
    code, _, _ = client_error(
        client.put_image_scanning_configuration,
        repositoryName="scan/no-such-repo",
        imageScanningConfiguration={"scanOnPush": True},
    )
    assert code == "RepositoryNotFoundException"


def test_registry_scanning_rules(make_server: ServerFactory) -> None:
    server = make_server("--vulnerability-db", str(DATABASE))
    client = server.client()
    default = client.get_registry_scanning_configuration()
    assert default["registryId"] == "123456789012"
    assert default["scanningConfiguration"] == {"scanType": "BASIC", "rules": []}
    rules = [
        {
            "scanFrequency": "SCAN_ON_PUSH",
            "repositoryFilters": [
                {"filter": "prod/*", "filterType": "WILDCARD"},
                {"filter": "critical", "filterType": "WILDCARD"},
            ],
        },
        {
            "scanFrequency": "MANUAL",
            "repositoryFilters": [{"filter": "dev/*", "filterType": "WILDCARD"}],
        },
    ]
    put = client.put_registry_scanning_configuration(scanType="BASIC", rules=rules)
    assert put["registryScanningConfiguration"] == {"scanType": "BASIC", "rules": rules}
    got = client.get_registry_scanning_configuration()["scanningConfiguration"]
    assert got == {"scanType": "BASIC", "rules": rules}
    for name in ("prod/app", "team/critical-db", "dev/app", "other/app"):
        client.create_repository(repositoryName=name)
    batch = client.batch_get_repository_scanning_configuration(
        repositoryNames=["prod/app", "team/critical-db", "dev/app", "other/app", "no/such"]
    )
    configs = {
        c["repositoryName"]: (c["scanOnPush"], c["scanFrequency"], c["appliedScanFilters"])
        for c in batch["scanningConfigurations"]
    }
    assert configs == {
        "prod/app": (True, "SCAN_ON_PUSH", [{"filter": "prod/*", "filterType": "WILDCARD"}]),
        "team/critical-db": (
            True,
            "SCAN_ON_PUSH",
            [{"filter": "critical", "filterType": "WILDCARD"}],
        ),
        "dev/app": (False, "MANUAL", [{"filter": "dev/*", "filterType": "WILDCARD"}]),
        "other/app": (False, "MANUAL", []),
    }
    assert batch["scanningConfigurations"][0]["repositoryArn"] == (
        "arn:aws:ecr:us-east-1:123456789012:repository/prod/app"
    )
    assert batch["failures"] == [
        {
            "repositoryName": "no/such",
            "failureCode": "REPOSITORY_NOT_FOUND",
            "failureReason": "REPOSITORY_NOT_FOUND",
        }
    ]
    scanned = push(client, "prod/app", debian_layers(), "v1")
    assert findings_of(_wait(client, "prod/app", scanned)) == DEBIAN_FINDINGS
    manual = push(client, "dev/app", debian_layers(), "v1")
    code, _, _ = client_error(
        client.describe_image_scan_findings,
        repositoryName="dev/app",
        imageId={"imageDigest": manual},
    )
    assert code == "ScanNotFoundException"
    # the rules are replaced whole; an empty list removes them
    client.put_registry_scanning_configuration(scanType="BASIC", rules=[])
    assert client.get_registry_scanning_configuration()["scanningConfiguration"]["rules"] == []


def test_only_basic_scanning_is_offered(make_server: ServerFactory) -> None:
    client = make_server().client()
    code, message, _ = client_error(
        client.put_registry_scanning_configuration, scanType="ENHANCED", rules=[]
    )
    assert code == "ValidationException" and "BASIC" in message
    code, message, _ = client_error(
        client.put_registry_scanning_configuration,
        scanType="BASIC",
        rules=[
            {
                "scanFrequency": "CONTINUOUS_SCAN",
                "repositoryFilters": [{"filter": "*", "filterType": "WILDCARD"}],
            }
        ],
    )
    assert code == "ValidationException" and "CONTINUOUS_SCAN" in message
    assert client.get_registry_scanning_configuration()["scanningConfiguration"]["rules"] == []


def test_without_a_database_scans_fail_saying_so(make_server: ServerFactory) -> None:
    client = make_server().client()
    client.create_repository(repositoryName="team/app")
    digest = push(client, "team/app", debian_layers(), "v1")
    client.start_image_scan(repositoryName="team/app", imageId={"imageDigest": digest})
    with pytest.raises(WaiterError):
        client.get_waiter("image_scan_complete").wait(
            repositoryName="team/app", imageId={"imageDigest": digest}, WaiterConfig=WAIT
        )
    found = client.describe_image_scan_findings(
        repositoryName="team/app", imageId={"imageDigest": digest}
    )
    assert found["imageScanStatus"]["status"] == "FAILED"
    assert "No vulnerability database is configured" in found["imageScanStatus"]["description"]
    assert "--vulnerability-db" in found["imageScanStatus"]["description"]
    # a failed scan does not count against the daily limit
    again = client.start_image_scan(repositoryName="team/app", imageId={"imageDigest": digest})
    assert again["imageScanStatus"]["status"] == "IN_PROGRESS"


def test_scans_survive_a_restart(make_server: ServerFactory, tmp_path: Path) -> None:
    data = tmp_path / "kept"
    server = make_server("--vulnerability-db", str(DATABASE), data_dir=data)
    client = server.client()
    client.create_repository(repositoryName="team/app")
    digest = push(client, "team/app", alpine_layers(), "v1")
    client.start_image_scan(repositoryName="team/app", imageId={"imageDigest": digest})
    _wait(client, "team/app", digest)
    server.restart()
    found = server.client().describe_image_scan_findings(
        repositoryName="team/app", imageId={"imageDigest": digest}
    )
    assert findings_of(found) == ALPINE_FINDINGS
    assert json.loads(json.dumps(found["imageScanStatus"]))["status"] == "COMPLETE"


def test_a_registry_api_push_is_scanned_on_push(scanner: Server, client: Any) -> None:
    import httpx

    name = f"scan/v2-{uuid.uuid4().hex[:10]}"
    client.create_repository(repositoryName=name, imageScanningConfiguration={"scanOnPush": True})
    manifest = build_image(client, name, alpine_layers())  # blobs through the ECR API
    with httpx.Client(base_url=scanner.endpoint, timeout=30) as v2:
        put = v2.put(
            f"/v2/{name}/manifests/3.19",
            content=manifest.encode(),
            headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
        )
    assert put.status_code == 201, put.text
    digest = put.headers["Docker-Content-Digest"]
    assert findings_of(_wait(client, name, digest)) == ALPINE_FINDINGS
