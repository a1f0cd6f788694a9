"""Scan on push of images pushed by a real client (skopeo), with real Debian and Alpine package
databases, against the test OSV database the e2e server runs with."""

from __future__ import annotations

from pathlib import Path

from e2e.conftest import Registry, Skopeo, unique
from e2e.images import Image, make_layer
from scan_images import (
    ALPINE_FINDINGS,
    ALPINE_INSTALLED,
    ALPINE_OS_RELEASE,
    DEBIAN_FINDINGS,
    DEBIAN_OS_RELEASE,
    DEBIAN_STATUS,
    findings_of,
)


def _push_and_scan(
    registry: Registry, skopeo: Skopeo, tmp_path: Path, files: dict[str, str], oci: bool
) -> dict[str, object]:
    repository = unique("scan")
    ecr = registry.ecr()
    ecr.create_repository(
        repositoryName=repository, imageScanningConfiguration={"scanOnPush": True}
    )
    layer = make_layer({path: (text.encode(), 0o644) for path, text in files.items()})
    image = Image([layer], marker=repository, oci=oci)
    # an OCI image from an OCI layout; a Docker one verbatim from containers/image's dir:
    source = (
        f"oci:{image.write_oci_layout(tmp_path / 'layout', 'v1')}:v1"
        if oci
        else f"dir:{image.write_dir(tmp_path / 'dir')}"
    )
    skopeo.copy(source, f"docker://{registry.host}/{repository}:v1")
    ecr.get_waiter("image_scan_complete").wait(
        repositoryName=repository,
        imageId={"imageTag": "v1"},
        WaiterConfig={"Delay": 0.5, "MaxAttempts": 240},
    )
    found: dict[str, object] = ecr.describe_image_scan_findings(
        repositoryName=repository, imageId={"imageDigest": image.digest}
    )
    return found


def test_a_debian_image_pushed_by_skopeo_is_scanned(
    registry: Registry, skopeo: Skopeo, tmp_path: Path
) -> None:
    files = {"etc/os-release": DEBIAN_OS_RELEASE, "var/lib/dpkg/status": DEBIAN_STATUS}
    found = _push_and_scan(registry, skopeo, tmp_path, files, oci=False)
    assert findings_of(found) == DEBIAN_FINDINGS


def test_an_alpine_oci_image_pushed_by_skopeo_is_scanned(
    registry: Registry, skopeo: Skopeo, tmp_path: Path
) -> None:
    files = {"etc/os-release": ALPINE_OS_RELEASE, "lib/apk/db/installed": ALPINE_INSTALLED}
    found = _push_and_scan(registry, skopeo, tmp_path, files, oci=True)
    assert findings_of(found) == ALPINE_FINDINGS
