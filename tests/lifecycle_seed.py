"""Images with past push times, stored through the service layer on a server's data directory
(a runtime of its own on the same store, with an ImageService whose clock is set back)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from openecr.bootstrap import Runtime, build_runtime
from openecr.config import Config
from openecr.service.images import ImageService

ACCOUNT = "123456789012"
DOCKER = "application/vnd.docker.distribution.manifest.v2+json"
INDEX = "application/vnd.oci.image.index.v1+json"


@contextmanager
def runtime_on(data_dir: Path) -> Iterator[Runtime]:
    runtime = build_runtime(Config(data_dir=data_dir))
    try:
        yield runtime
    finally:
        runtime.close()


def manifest(name: str) -> bytes:
    """A distinct image manifest whose blobs are not stored (stored leniently)."""
    seed = f"{name}-{uuid.uuid4().hex}".encode().hex()[:64].ljust(64, "0")
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER,
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": 2,
                "digest": f"sha256:{seed}",
            },
            "layers": [],
        }
    ).encode()


def push(
    runtime: Runtime,
    repository: str,
    raw: bytes,
    tags: list[str],
    pushed_at: datetime,
    media_type: str = DOCKER,
) -> str:
    """Store ``raw`` as pushed at ``pushed_at`` with ``tags``; its digest."""
    images = ImageService(runtime.metadata, lenient_manifests=True, clock=lambda: pushed_at)
    digest = ""
    for tag in tags or [None]:
        result = images.store_manifest(ACCOUNT, repository, raw, media_type, tag, None)
        digest = result.image.digest
    return digest


def seed(
    runtime: Runtime, repository: str, images: list[tuple[str, list[str], int]], now: datetime
) -> dict[str, str]:
    """Push each (name, tags, days since push) in order; name -> digest."""
    digests: dict[str, str] = {}
    for i, (name, tags, days) in enumerate(images):
        # one second apart at equal ages, so push order is the listed order
        at = now - timedelta(days=days) + timedelta(seconds=i)
        digests[name] = push(runtime, repository, manifest(name), tags, at)
    return digests


def utcnow() -> datetime:
    return datetime.now(UTC)
