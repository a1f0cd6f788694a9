"""The scanning service at a set clock: the once-per-24-hours limit, and scans whose process
died (IN_PROGRESS past the stale time) reading as FAILED."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import Executor, Future
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from lifecycle_seed import ACCOUNT, runtime_on
from openecr.bootstrap import Runtime
from openecr.domain.model import ImageId
from openecr.errors import LimitExceeded
from openecr.service.images import ImageService
from openecr.service.repositories import NewRepository
from openecr.service.scanning import DESCRIPTION_INTERRUPTED, ScanningService
from openecr.service.vulnerability_db import VulnerabilityDatabase
from scan_images import DATABASE, DEBIAN_FINDINGS, OCI, debian_layers

START = datetime(2030, 1, 1, tzinfo=UTC)


class _Dropped(Executor):
    """An executor whose work never runs, as when the process dies before a scan runs."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        return Future()


def _image(runtime: Runtime) -> str:
    """A Debian image stored in team/app (blobs put straight into the blob store)."""
    runtime.registry.repositories.create(ACCOUNT, NewRepository(name="team/app"))
    layers = [
        {"mediaType": media_type, "size": len(data), "digest": runtime.blobs.put(data)}
        for media_type, data in debian_layers()
    ]
    config = b'{"os": "linux"}'
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "size": len(config),
                "digest": runtime.blobs.put(config),
            },
            "layers": layers,
        }
    ).encode()
    images = ImageService(runtime.metadata, lenient_manifests=True)
    return images.store_manifest(ACCOUNT, "team/app", manifest, OCI, "v1", None).image.digest


def test_an_image_is_scanned_again_after_24_hours(tmp_path: Path) -> None:
    now = [START]
    with runtime_on(tmp_path) as runtime:
        digest = _image(runtime)
        scanning = ScanningService(
            runtime.metadata, runtime.blobs, VulnerabilityDatabase(DATABASE), lambda: now[0]
        )
        image = ImageId(digest)
        scanning.start_scan(ACCOUNT, "team/app", image)
        page = scanning.findings(ACCOUNT, "team/app", image)
        assert page.scan.status == "COMPLETE"
        assert [(f.name, f.severity) for f in page.findings] == [
            (name, severity) for name, severity, _, _ in DEBIAN_FINDINGS
        ]
        now[0] = START + timedelta(hours=23, minutes=59)
        with pytest.raises(LimitExceeded):
            scanning.start_scan(ACCOUNT, "team/app", image)
        now[0] = START + timedelta(hours=24)
        _, _, again = scanning.start_scan(ACCOUNT, "team/app", image)
        assert again.started_at == now[0]
        assert scanning.findings(ACCOUNT, "team/app", image).scan.completed_at == now[0]


def test_a_scan_that_never_finished_reads_failed_and_may_start_again(tmp_path: Path) -> None:
    now = [START]
    with runtime_on(tmp_path) as runtime:
        digest = _image(runtime)
        dead = ScanningService(
            runtime.metadata,
            runtime.blobs,
            VulnerabilityDatabase(DATABASE),
            lambda: now[0],
            executor=_Dropped(),
        )
        image = ImageId(None, "v1")
        dead.start_scan(ACCOUNT, "team/app", image)
        assert dead.findings(ACCOUNT, "team/app", image).scan.status == "IN_PROGRESS"
        with pytest.raises(LimitExceeded):
            dead.start_scan(ACCOUNT, "team/app", image)
        now[0] = START + timedelta(minutes=31)
        scan = dead.findings(ACCOUNT, "team/app", image).scan
        assert (scan.status, scan.description) == ("FAILED", DESCRIPTION_INTERRUPTED)
        alive = ScanningService(
            runtime.metadata, runtime.blobs, VulnerabilityDatabase(DATABASE), lambda: now[0]
        )
        alive.start_scan(ACCOUNT, "team/app", image)
        assert alive.findings(ACCOUNT, "team/app", ImageId(digest)).scan.status == "COMPLETE"
