"""ImageService.on_push: listeners (replication, scan on push) hear every committed push."""

from __future__ import annotations

from pathlib import Path

import pytest

from lifecycle_seed import ACCOUNT, DOCKER, manifest, runtime_on
from openecr.service.images import ImageService, PutResult
from openecr.service.repositories import NewRepository


def test_listeners_hear_each_committed_push_and_cannot_fail_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with runtime_on(tmp_path) as runtime:
        runtime.registry.repositories.create(ACCOUNT, NewRepository(name="team/app"))
        images = ImageService(runtime.metadata, lenient_manifests=True)
        heard: list[PutResult] = []
        images.on_push(heard.append)

        def broken(result: PutResult) -> None:
            raise RuntimeError("listener bug")

        images.on_push(broken)
        raw = manifest("a")
        first = images.store_manifest(ACCOUNT, "team/app", raw, DOCKER, "v1", None)
        images.store_manifest(ACCOUNT, "team/app", raw, DOCKER, "v1", None, idempotent=True)
        images.store_manifest(ACCOUNT, "team/app", raw, DOCKER, "v2", None)

        assert [(r.tag, r.changed) for r in heard] == [("v1", True), ("v1", False), ("v2", True)]
        assert {r.image.digest for r in heard} == {first.image.digest}
        assert "listener bug" in caplog.text  # logged, and every push above still succeeded
