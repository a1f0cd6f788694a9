"""Previews run in the background: IN_PROGRESS until evaluated, one at a time per repository,
and a preview whose process died reads FAILED after a while (service level, on a real store)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor, Future
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from lifecycle_seed import ACCOUNT, runtime_on, seed, utcnow
from openecr.errors import LifecyclePolicyPreviewInProgress
from openecr.service.images import ImageService
from openecr.service.lifecycle import PREVIEW_STALE, LifecycleService
from openecr.service.repositories import NewRepository

POLICY = (
    '{"rules":[{"rulePriority":1,"selection":{"tagStatus":"untagged","countType":'
    '"sinceImagePushed","countUnit":"days","countNumber":7},"action":{"type":"expire"}}]}'
)


class HeldExecutor(Executor):
    """Runs submitted work only when ``release`` is called."""

    def __init__(self) -> None:
        self.held: list[Callable[[], Any]] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.held.append(lambda: fn(*args, **kwargs))
        return Future()

    def release(self) -> None:
        while self.held:
            self.held.pop(0)()


def test_a_second_preview_waits_for_the_first(tmp_path: Path) -> None:
    now = utcnow()
    with runtime_on(tmp_path) as runtime:
        runtime.registry.repositories.create(ACCOUNT, NewRepository(name="app"))
        digests = seed(runtime, "app", [("old", [], 30), ("new", [], 1)], now)
        executor = HeldExecutor()
        service = LifecycleService(
            runtime.metadata, ImageService(runtime.metadata), executor=executor
        )

        assert service.start_preview(ACCOUNT, "app", POLICY).status == "IN_PROGRESS"
        preview, page, _ = service.get_preview(ACCOUNT, "app")
        assert (preview.status, page) == ("IN_PROGRESS", [])
        with pytest.raises(LifecyclePolicyPreviewInProgress) as caught:
            service.start_preview(ACCOUNT, "app", POLICY)
        assert caught.value.ecr_type == "LifecyclePolicyPreviewInProgressException"

        executor.release()
        preview, page, _ = service.get_preview(ACCOUNT, "app")
        assert preview.status == "COMPLETE"
        assert [r.digest for r in page] == [digests["old"]]
        assert service.start_preview(ACCOUNT, "app", POLICY).status == "IN_PROGRESS"


def test_a_preview_left_in_progress_by_a_dead_process_reads_failed(tmp_path: Path) -> None:
    clock = [utcnow()]
    with runtime_on(tmp_path) as runtime:
        runtime.registry.repositories.create(ACCOUNT, NewRepository(name="app"))
        images = ImageService(runtime.metadata)
        dead = LifecycleService(runtime.metadata, images, executor=HeldExecutor())
        dead.start_preview(ACCOUNT, "app", POLICY)  # its work never runs

        later = LifecycleService(runtime.metadata, images, clock=lambda: clock[0])
        with pytest.raises(LifecyclePolicyPreviewInProgress):
            later.start_preview(ACCOUNT, "app", POLICY)
        clock[0] += PREVIEW_STALE + timedelta(seconds=1)
        assert later.get_preview(ACCOUNT, "app")[0].status == "FAILED"
        later.start_preview(ACCOUNT, "app", POLICY)  # inline: complete on return
        assert later.get_preview(ACCOUNT, "app")[0].status == "COMPLETE"
